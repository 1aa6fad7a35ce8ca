"""Hyper-parameter search with Optuna: what the project's Hydra sweeper (``hydra/sweeper=optuna``, in
``src/hydra_plugins/experiments_optuna_sweeper``) and the trials it launches share.

One room per concern: :mod:`.strategies` (sampler and pruner by name), :mod:`.space` (Hydra's sweep syntax as
Optuna distributions), :mod:`.objective` (the task's metric and direction, the step a value is reported at),
:mod:`.storage` (the study's SQLite file, repairing a killed sweep, the sweep dir's ``search.json``),
:mod:`.pruning` (the Lightning callback a trial reports through), :mod:`.explain` (importances and plots) and
:mod:`.retest` (the top configurations again, on fresh seeds). Optuna is imported by these modules only, so a
project without the ``sweeps`` extra still trains and reports.
"""
