"""The live displays on a terminal (CliRunner and CI are not terminals, so drive them here)."""

from __future__ import annotations

import json
from pathlib import Path

from poolbench.progress import RunProgress, SweepProgress


def test_live_sweep_display_with_nested_run_bars_starts_and_stops(tmp_path: Path):
    run_dirs = [tmp_path / "a", tmp_path / "b"]
    with SweepProgress(run_dirs, skipped=0, live=True, interval_s=0.01) as sweep:
        for i, run_dir in enumerate(run_dirs, 1):
            with RunProgress(f"run {i}", epochs=1, steps_per_epoch=2, live=True) as run:
                run.step(1, 1, 0.5, 100.0)
                run.step(1, 2, 0.4, 100.0)
                run.epoch_end(1, 0.45, None, 100.0)
            run_dir.mkdir()
            status = "ok" if i == 1 else "failed"
            (run_dir / "result.json").write_text(json.dumps({"status": status}))
    assert (sweep.ok, sweep.failed, sweep.done) == (1, 1, 2)
    assert sweep._progress is not None and not sweep._progress.live.is_started
