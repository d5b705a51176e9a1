"""`nnparity race`: time to a trained model, every backend from the same start.

`config` holds the raced tasks (each with its target and the reason for it)
and the presets; `worker` trains one (backend, task) group in its own
process; `score` applies the rules (olympic scoring, the failure rule);
`run` is the command that spawns the workers and writes `race.json`;
`report` renders REPORT.md and the figures from that file alone.
Importing this package imports no framework.
"""
