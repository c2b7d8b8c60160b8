"""The core: errors, value checks, registries, metrics, the run config and the run record,
paths, atomic file writing, and the thresholds and defaults every layer shares.

Imports nothing of poolbench outside ``core`` and never imports torch, so that the command
line and the reports can load it in a fraction of a second.
"""
