"""The settings sweep (issue 24): every speed setting a backend declares (`impls.settings`),
toggled alone, timed against the default in interleaved rounds of worker processes and
checked against the float64 reference; the best safe setting per framework.

`plan.py` which (cell, setting) items run in which processes; `worker.py` one worker
process; `sweep.py` the rounds into one document; `results.py` settings.json, written
and read back as untrusted input; `analysis.py` speed-ups, intervals, the "~" rule and
the best safe rule; `report.py` SETTINGS.md and settings.png. The command is
`bench/commands/settings.py`.
"""
