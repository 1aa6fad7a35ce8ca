"""The classics, reproduced: regenerate every number and figure of ``docs/classics.md``.

    make classics                      # full budget, writes docs/classics.md and docs/images/classics/
    make classics ARGS=--quick         # smoke budget, writes outputs/classics-quick/ (page included)
    python -m experiments.classics --help

Each lesson of the study note is a *section* (one module here): the real CLI runs that produce its
evidence (``python -m experiments.train -m ...``, ``experiments.report``, ``experiments.inspect``), what it
reads back from those runs, the published numbers it is compared with, and the *claims* (stated orderings
with a tolerance) that decide its verdict. ``tests/test_classics.py`` checks the claims that need no
training on every test run, and every section's claims at the ``--quick`` budget in its ``slow`` tests.

A feature of the package, not a benchmark: it writes the project's docs. It drives the framework from outside,
as a user would (every run is a subprocess of the real CLI), and imports the rest of ``experiments`` only to read
what the runs wrote (``experiments.reporting``) and for the measurements the CLIs do not offer (test images
shifted by a few pixels, training throughput). Nothing else in the package imports it.
"""
