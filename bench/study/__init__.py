"""`nnparity study`: the gradient-flow claims the three tasks stand for, measured in every backend.

Three studies: gradient through time (dL/dh_t of the recurrent task's cells,
from `Program.hidden_state_grads`), gradient through depth (per layer weight
gradients, saturated and dead units of deep MLPs) and whether the cells learn
the adding problem as the sequence grows. `config` holds the presets, `jobs`
the units of work (each run in a worker process), `run` the command that
schedules them and writes the raw data, `summary` the quotable numbers and
`report` the Markdown and figures, regenerated from the raw data alone.
Importing this package imports no framework.
"""
