"""How fast a run trains, as config: threads and packing (settings.py), torch.compile and channels-last (compile.py).

The speed settings live in ``conf/trainer`` next to the Lightning switches they work with (``precision``,
``benchmark``); they change how a run executes, never what it computes beyond floating-point rounding, and
every run records them in ``metrics.json`` as ``speed``. Where the data lives during training (on the GPU or
streamed from pinned host memory) is the data module's decision: ``experiments.data.placement``.
"""
