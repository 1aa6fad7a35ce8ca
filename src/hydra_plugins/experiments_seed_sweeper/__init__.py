"""The project's seed sweeper for Hydra (``hydra/sweeper=seeds``): adds seeds until comparisons resolve; see
:mod:`.sweeper`."""
