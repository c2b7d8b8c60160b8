"""Records that come home from nodes without a shared disk: a returned record (and its
metrics.csv) is written once into the command's results directory, never over a newer one,
and one that does not parse as a run's record is refused with a warning; the job reports then
point at the runs at home. Each launcher's --dry-run says what a run asks for."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from poolbench.core.record import RECORD_NAME
from poolbench.run.homecoming import bring_home
from poolbench.run.jobs import read_reports, write_job_report
from poolbench.sweep.callbacks import JobResult
from poolbench.sweep.outcome import come_home
from tests.helpers.cli import invoke
from tests.helpers.fake_records import record


def returned(started: str = "2026-12-06T10:00:00.000+00:00", **fields) -> dict:
    return {**record("max", 0, 0.9), "started_at": started, **fields}


def test_a_returned_record_is_written_once_with_its_history(tmp_path: Path):
    rec = returned()
    home = bring_home(rec, {"metrics.csv": "epoch,train_loss\n1,0.5\n"}, tmp_path)
    assert home.written and not home.warning
    run_dir = tmp_path / "runs" / rec["run_name"]
    assert home.run_dir == run_dir
    assert json.loads((run_dir / RECORD_NAME).read_text()) == rec
    assert (run_dir / "metrics.csv").read_text().startswith("epoch,train_loss")
    again = bring_home(rec, {"metrics.csv": "changed"}, tmp_path)
    assert not again.written  # the same record: nothing rewritten
    assert (run_dir / "metrics.csv").read_text().startswith("epoch,train_loss")


def test_an_older_record_never_replaces_a_newer_one(tmp_path: Path):
    newer = returned("2026-12-06T11:00:00.000+00:00", test_acc=0.95)
    older = returned("2026-12-06T10:00:00.000+00:00", test_acc=0.5)
    assert bring_home(newer, {}, tmp_path).written
    assert not bring_home(older, {}, tmp_path).written
    path = tmp_path / "runs" / newer["run_name"] / RECORD_NAME
    assert json.loads(path.read_text())["test_acc"] == 0.95
    # a failed run started again and finished ok comes home over the failure
    failed = returned("2026-12-06T12:00:00.000+00:00", status="failed", test_acc=None)
    assert bring_home(failed, {}, tmp_path).written
    ok = returned("2026-12-06T12:00:00.000+00:00")
    assert bring_home(ok, {}, tmp_path).written
    assert json.loads(path.read_text())["status"] == "ok"
    assert not bring_home(failed, {}, tmp_path).written


@pytest.mark.parametrize(
    ("rec", "why"),
    [
        (["not", "a", "record"], "expected a JSON object"),
        (returned(run_name="../../escape"), "is not a run directory's name"),
        (returned(run_name="a/b"), "is not a run directory's name"),
        (returned(status="running"), "status 'running'"),
        (returned(started_at=None), "started_at None"),
        (returned(run_id=7), "run_id 7"),
        (returned(config=None), "it has no config"),
        # a time that sorts after every real one as text, and one without its zone
        (returned(started_at="9"), "started_at '9' is not a time"),
        (returned(started_at="2026-12-06T10:00:00"), "is not a time with its zone"),
        # another run's config, its own hash, under this run's name
        (
            returned(config=record("avg", 0)["config"], run_id=record("avg", 0)["run_id"]),
            "is not its config's run",
        ),
    ],
)
def test_an_unusable_record_is_refused_and_nothing_is_written(tmp_path: Path, rec, why: str):
    home = bring_home(rec, {"metrics.csv": "x"}, tmp_path / "results", "job 3")
    assert home.run_dir is None and not home.written
    assert (
        home.warning.startswith("warning: job 3 returned an unusable record")
        and why in home.warning
    )
    assert not (tmp_path / "results").exists()
    assert not list(tmp_path.rglob("*.json"))


def test_only_the_files_that_travel_are_written(tmp_path: Path):
    rec = returned()
    bring_home(rec, {"metrics.csv": "a\n", "checkpoint.pt": "x", "../x.csv": "y"}, tmp_path)
    written = sorted(p.name for p in (tmp_path / "runs" / rec["run_name"]).iterdir())
    assert written == ["metrics.csv", RECORD_NAME]
    assert not (tmp_path / "x.csv").exists()


def job_return(job: int, output_dir: str, result: object, status=JobStatus.COMPLETED) -> JobReturn:
    hydra_cfg = OmegaConf.create(
        {"hydra": {"runtime": {"output_dir": output_dir}, "job": {"num": job}}}
    )
    return JobReturn(
        overrides=[f"seed={job}"], hydra_cfg=hydra_cfg, status=status, _return_value=result
    )


def test_come_home_writes_the_records_and_points_the_job_reports_home(tmp_path: Path):
    """As a Ray worker with another results path hands its jobs back: the records land in the
    command's results directory and the sweep's job reports name them there."""
    worker, home, sweep = tmp_path / "node", tmp_path / "results", tmp_path / "sweep"
    recs = [
        {**record("max", s, 0.9), "started_at": "2026-12-06T10:00:00.000+00:00"} for s in range(2)
    ]
    returns = []
    for job, rec in enumerate(recs):
        node_dir = worker / "runs" / rec["run_name"]
        write_job_report(sweep, job, {"job": job, "run_dir": str(node_dir), "run_name": "x"})
        result = JobResult.of(rec, "test_acc", files={"metrics.csv": f"epoch\n{job}\n"})
        returns.append(job_return(job, str(node_dir), pickle.loads(pickle.dumps(result))))
    returns.append(
        job_return(2, str(worker / "runs" / "gone"), RuntimeError("x"), JobStatus.FAILED)
    )
    assert come_home(returns, home, sweep) == []
    for job, rec in enumerate(recs):
        run_dir = home / "runs" / rec["run_name"]
        assert json.loads((run_dir / RECORD_NAME).read_text())["run_id"] == rec["run_id"]
        assert (run_dir / "metrics.csv").read_text() == f"epoch\n{job}\n"
    *reports, failed = read_reports(sweep)
    assert [r["run_dir"] for r in reports] == [str(home / "runs" / r["run_name"]) for r in recs]
    # the failed job is reported here too (its node's report may be on the node's disk)
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: x"
    assert not (home / "runs" / "gone").exists()


def test_a_corrupt_returned_record_is_refused_with_a_warning(tmp_path: Path):
    bad = JobResult.of({**returned(), "run_name": "../../etc"}, "test_acc")
    notes = come_home([job_return(0, str(tmp_path / "n"), bad)], tmp_path / "r", tmp_path / "s")
    assert len(notes) == 1 and "job 0 returned an unusable record" in notes[0]
    assert not (tmp_path / "r").exists() and not (tmp_path / "etc").exists()
    # the closing table still counts the job, failed, saying why
    (report,) = read_reports(tmp_path / "s")
    assert report["status"] == "failed" and "unusable record" in report["error"]
    assert report["run_dir"] == str(tmp_path / "r" / "runs" / "n")


@pytest.mark.parametrize(
    ("launcher", "says"),
    [
        (None, "launcher: in this process, one run after another"),
        ("joblib", "launcher: joblib: 1 run at once on this machine"),
        (
            "slurm_cpu",
            "each run asks partition the default for 1 node, 4 CPUs, 0 GPUs, 8 GB, 120 min",
        ),
        ("slurm_gpu", "1 node, 8 CPUs, 1 GPU, 32 GB, 240 min"),
        ("ray_local", "Ray: each run a task on a Ray cluster this command starts on this machine"),
        (
            "ray_cluster",
            "Ray: each run a task on the running Ray cluster, asking 4 CPUs and 0 GPUs",
        ),
    ],
)
def test_dry_run_says_where_each_run_goes_and_what_it_asks_for(workdir: Path, launcher, says):
    if launcher and launcher.startswith("ray"):
        pytest.importorskip(
            "hydra_plugins.hydra_ray_launcher", reason="pip install 'poolbench[ray]'"
        )
    chosen = [f"hydra/launcher={launcher}"] if launcher else []
    result = invoke("run", "-m", *chosen, "pool=max,avg", "--dry-run")
    assert result.exit_code == 0, result.output
    assert says in " ".join(result.output.split())
    assert "2 of 2 runs can run" in result.output
    on_nodes = launcher in ("slurm_cpu", "slurm_gpu", "ray_cluster")
    assert ("each node measures its own" in result.output) is on_nodes
    assert not (workdir / "results").exists()


def test_a_cluster_the_launcher_cannot_reach_is_one_line(workdir: Path, monkeypatch):
    import poolbench.sweep.outcome as outcome

    def unreachable(*args, **kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379")

    monkeypatch.setattr(outcome, "launch", unreachable)
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install 'poolbench[ray]'")
    result = invoke("run", "-m", "hydra/launcher=ray_cluster", "pool=max,avg", "train.epochs=1")
    assert result.exit_code == 2
    assert "error: the launcher could not reach its cluster (Failed to connect" in result.output
    assert "Traceback" not in result.output


def test_a_record_of_another_run_or_with_a_forged_id_is_refused(tmp_path: Path):
    """A job can only bring home its own run's record, and a record whose run_id is not the
    hash of its config is refused."""
    rec = returned()
    other = bring_home(rec, {}, tmp_path, "job 1", run_name="some-other-run")
    assert other.run_dir is None and "is not the job's run 'some-other-run'" in other.warning
    forged = bring_home({**rec, "run_id": "0123456789abcdef"}, {}, tmp_path, "job 1")
    assert forged.run_dir is None and "is not the hash of its config" in forged.warning
    assert not (tmp_path / "runs").exists()


def test_a_run_another_process_is_writing_is_left_to_it(tmp_path: Path):
    """bring_home holds the run's lock, as every writer of the run does: while another
    process trains the run (a rerun of the same run, say), its record is not replaced."""
    from poolbench.run.locks import RunLock

    rec = returned()
    run_dir = tmp_path / "runs" / rec["run_name"]
    lock = RunLock(run_dir)
    assert lock.try_acquire()
    try:
        busy = bring_home(rec, {}, tmp_path, "job 2")
    finally:
        lock.release()
    assert not busy.written and "job 2's run" in busy.warning and "another process" in busy.warning
    assert not (run_dir / RECORD_NAME).exists()
    # the command's closing table says why it has no record of the run
    ret = job_return(2, str(tmp_path / "node" / rec["run_name"]), JobResult.of(rec, "test_acc"))
    assert lock.try_acquire()
    try:
        (note,) = come_home([ret], tmp_path, tmp_path / "sweep")
    finally:
        lock.release()
    (report,) = read_reports(tmp_path / "sweep")
    assert report["status"] == "failed" and "another process" in report["error"] == note[6:]
    assert bring_home(rec, {}, tmp_path, "job 2").written  # once it is free


def test_a_corrupt_record_at_home_is_set_aside_and_replaced(tmp_path: Path):
    rec = returned()
    run_dir = tmp_path / "runs" / rec["run_name"]
    run_dir.mkdir(parents=True)
    (run_dir / RECORD_NAME).write_text('{"run_name": "trunc')
    assert bring_home(rec, {}, tmp_path).written
    assert json.loads((run_dir / RECORD_NAME).read_text()) == rec
    (kept,) = run_dir.glob(f"{RECORD_NAME}.corrupt-*")
    assert kept.read_text() == '{"run_name": "trunc'


def test_a_node_that_cannot_write_the_commands_sweep_directory_still_hands_its_run_back(
    tmp_path: Path,
):
    """On a node without the command's disk the job's report cannot be written where the
    command's sweep directory is: the job goes on (its return carries the record) and the
    command writes the report (come_home)."""
    from hydra.types import RunMode

    from poolbench.sweep.callbacks import JobReports

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = OmegaConf.create(
        {"hydra": {"mode": RunMode.MULTIRUN, "job": {"num": 0}, "sweep": {"dir": str(blocker)}}}
    )
    rec = returned()
    ret = job_return(
        0, str(tmp_path / "node" / "runs" / rec["run_name"]), JobResult.of(rec, "test_acc")
    )
    JobReports().on_job_end(config, ret)  # no error
    assert come_home([ret], tmp_path / "results", tmp_path / "sweep") == []
    (report,) = read_reports(tmp_path / "sweep")
    assert report["status"] == "ok"
    assert report["run_dir"] == str(tmp_path / "results" / "runs" / rec["run_name"])


def test_submitits_folder_is_private_and_out_of_the_results_directory(tmp_path: Path, monkeypatch):
    """submitit loads the pickles in its folder: poolbench moves the plugin's default folder
    (under the sweep, in the results directory) to a private one in the cache, keeps a folder
    a preset or the command line sets, and refuses a folder that is a link."""
    import os

    from poolbench.core.errors import ConfigError
    from poolbench.sweep.plugins import (
        SUBMITIT_DEFAULT_FOLDER,
        SUBMITIT_SLURM,
        job_files_dir,
        launcher_defaults,
    )

    monkeypatch.setenv("POOLBENCH_CACHE", str(tmp_path / "cache"))
    default = OmegaConf.create(
        {"_target_": SUBMITIT_SLURM, "submitit_folder": SUBMITIT_DEFAULT_FOLDER}
    )
    (moved,) = launcher_defaults(default, [])
    assert moved == "hydra.launcher.submitit_folder='${pb_job_files:${hydra.sweep.dir}}/%j'"
    assert launcher_defaults(default, ["hydra.launcher.submitit_folder=/x/%j"]) == ()
    preset = OmegaConf.create({"_target_": SUBMITIT_SLURM, "submitit_folder": "/scratch/%j"})
    assert launcher_defaults(preset, []) == ()

    folder = Path(job_files_dir(str(tmp_path / "results" / "sweeps" / "20261207-010000")))
    assert folder.parent == tmp_path / "cache" / "jobs"
    assert folder.name.startswith("20261207-010000-") and folder.stat().st_mode & 0o777 == 0o700
    other = tmp_path / "results" / "sweeps" / "x"
    target = Path(job_files_dir(str(other)))
    os.rmdir(target)
    os.symlink(tmp_path, target)  # someone's link where the folder would be
    with pytest.raises(ConfigError, match="is not a folder of yours"):
        job_files_dir(str(other))


def test_a_run_ok_at_home_but_not_on_its_node_is_taken_from_home(tmp_path: Path):
    """A rerun on a cluster without a shared disk: the node lacks the run, the command has
    it; the job hands it back as skipped, and the sweeper and the report get the home record
    (no retraining). Gone from home meanwhile: a failed job that says so."""
    home, sweep = tmp_path / "results", tmp_path / "sweep"
    rec = returned(test_acc=0.75)
    bring_home(rec, {}, home)
    node_dir = str(tmp_path / "node" / "runs" / rec["run_name"])
    ret = job_return(0, node_dir, JobResult(float("-inf"), None, "test_acc", skipped=True))
    assert come_home([ret], home, sweep) == []
    assert ret.return_value == 0.75 and ret.return_value.record["run_id"] == rec["run_id"]
    (report,) = read_reports(sweep)
    assert report["status"] == "ok" and report["skipped"] and report["objective"] == 0.75
    assert report["run_dir"] == str(home / "runs" / rec["run_name"])

    gone = job_return(1, str(tmp_path / "node" / "runs" / "other"), ret.return_value)
    gone._return_value = JobResult(float("-inf"), None, "test_acc", skipped=True)
    come_home([gone], home, sweep)
    failed = read_reports(sweep)[1]
    assert failed["status"] == "failed" and "gone when its job ended" in failed["error"]
