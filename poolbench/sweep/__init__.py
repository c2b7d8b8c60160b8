"""The one place Hydra touches poolbench: plan a command line's runs, launch them through
Hydra's sweepers and launchers, the task function each job runs, the launcher and sweeper
policies, the job callbacks, and what a sweep hands back.

May import every layer below; the library under it receives plain typed values.
"""
