"""`nnparity race`: time to a trained model, every backend from the same start.

`config` holds the raced tasks (each with its target and the reason for it)
and the presets; `worker` trains one (backend, task) group in its own
process; `score` applies the rules (olympic scoring, the failure rule);
`run` spawns the workers, journals every finished run and writes
`race.json` (partial until every group is in); `report` renders REPORT.md and
the figures from that file alone. The command is bench/commands/race.py.
Importing this package imports no framework.
"""
