"""poolbench's racing sweeper as a Hydra plugin: ``hydra/sweeper=race``."""
