"""What many test modules share: the repository, the overrides of a fast run, the installed
command, and a check that an import stays clear of ``torch._dynamo``.

The other modules here: ``references`` (float64 loop references of the pooling formulas),
``datafiles`` (dataset fixtures in their real formats), ``fake_records`` (run records made by
hand), ``custom_nets`` (networks for model=custom) and ``cli`` (the command line in-process).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Overrides that make a run take about a second on 2 CPU cores.
FAST = [
    "train.epochs=1",
    "model.widths=[8,16,16]",
    "latency_batch=8",
    "latency_repeats=2",
    "threads=1",  # a tiny model gains nothing from 2 threads, and on a busy machine loses 2-10x
]

# The installed console script, beside this interpreter.
EXE = str(Path(sys.executable).with_name("poolbench"))

# Record fields a resumed (or repeated) CPU run reproduces bit for bit.
SAME = ("test_acc", "test_top5", "train_loss", "params")


def loads_dynamo(code: str, *args: str, cwd: Path | None = None) -> bool:
    """Run ``code`` in a fresh interpreter (``args`` as its ``sys.argv[1:]``); whether it left
    ``torch._dynamo`` imported. torch imports it (about a second) on first use of torch.optim
    and of dispatch modes; poolbench's startup depends on never doing so."""
    check = "\nimport sys\nprint('torch._dynamo' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code + check, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1] == "True"
