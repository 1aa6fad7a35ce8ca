"""The project's Optuna sweeper for Hydra (``hydra/sweeper=optuna``); see :mod:`.sweeper`."""
