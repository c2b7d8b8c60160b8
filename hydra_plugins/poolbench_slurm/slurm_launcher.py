"""``hydra/launcher=slurm_cpu`` and ``slurm_gpu``: Hydra's side of poolbench's Slurm launcher,
the hydra-submitit-launcher plugin's own but waiting for every job of its array and reporting a
job that ended without a result instead of raising at it (:mod:`poolbench.sweep.slurm`). Hydra
finds it in the ``hydra_plugins`` namespace; it exists where that plugin is installed
(``pip install "poolbench[submitit]"``).

No ``from __future__ import annotations`` here: Hydra's plugin discovery executes this module
without entering it in ``sys.modules``.
"""

from collections.abc import Sequence

from hydra.core.utils import JobReturn

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # the submitit extra is not installed: no Slurm launcher to extend
    submitit_launcher = None


if submitit_launcher is not None:

    class SlurmLauncher(submitit_launcher.SlurmLauncher):
        """submitit's Slurm launcher; the command waits for every job of the array."""

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            from poolbench.sweep.slurm import waiting_for_every_job

            with waiting_for_every_job(self, job_overrides, initial_job_idx):
                return super().launch(job_overrides, initial_job_idx)
