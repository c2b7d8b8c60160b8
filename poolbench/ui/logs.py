"""Logging helpers referenced from ``configs/hydra/job_logging/poolbench.yaml``."""

from __future__ import annotations

import logging


class ConsoleFilter(logging.Filter):
    """Drops records logged with ``extra={"console": False}`` (already shown on a live display)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True)
