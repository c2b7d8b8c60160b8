"""poolbench's Slurm launcher as a Hydra plugin: ``hydra/launcher=slurm_cpu``, ``slurm_gpu``."""
