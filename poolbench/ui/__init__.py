"""What a person sees while poolbench works: live progress of sweeps, runs and evaluation
phases on a terminal, plain lines elsewhere, and the log filters.

May import ``core``, the training loop's callback interface and the job reports of ``run``.
"""
