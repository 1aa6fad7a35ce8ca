"""A run's lifecycle: its directory and record, resume, exact mid-epoch state, signals, checkpoints, sweep status."""
