"""Training: the loop, the recipe (parameter groups, schedule, optimiser), checkpoints and the
loggers, with the callbacks through which everything else follows a run.

May import ``core``, ``pooling``, ``models``, ``data`` and ``measure``; knows nothing of the
display, of records on disk or of Hydra.
"""
