"""`nnparity study`: the gradient-flow claims the three tasks stand for, measured in every backend.

Three studies over the recurrent task's setups (a cell with its initialisation:
uniform, orthogonal or identity W_hh, LSTM forget-gate bias 1 or 0): gradient
through time (dL/dh_t, from `Program.hidden_state_grads`), learning curves on
the adding problem (held-out MSE against steps, read at several budgets, plus
Le et al. 2015's adding problem reproduced at scale), and gradient through
depth (per layer weight gradients, the product of mean |activation derivative|,
saturated and dead units of deep MLPs). Every comparison is per seed with its
min..max interval. `config` holds the setups and presets, `jobs` the units of
work (each run in a worker process), `run` the scheduler that writes the raw
data, `summary` the quotable numbers and `report` the Markdown and figures,
regenerated from the raw data alone; the command is `bench.commands.study`.
Importing this package imports no framework.
"""
