"""Datasets load from fixtures in their real on-disk formats through the code users run;
missing data fails in one line before training; shapes is seeded (and learnable:
tests/slow/test_data.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import poolbench.data.cifar as cifar
import poolbench.data.loader as loader
from poolbench.cli.main import app
from poolbench.core.errors import ConfigError, DataError
from poolbench.data import ImageData, create_dataset
from poolbench.run.runner import execute
from poolbench.sweep.plan import plan
from tests.helpers import FAST
from tests.helpers.datafiles import (
    IMAGENETTE_WNIDS,
    CIFAR10Unverified,
    CIFAR100Unverified,
    write_cifar,
    write_imagefolder,
    write_imagenette,
)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_python_batches(name: str, tmp_path: Path, unverified_cifar: None):
    write_cifar(tmp_path, name)
    data = create_dataset(name, root=str(tmp_path))
    assert isinstance(data, ImageData)
    n_train = 40
    assert data.train_x.shape == (n_train, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (8, 3, 32, 32)
    assert data.num_classes == (10 if name == "cifar10" else 100)
    assert data.flip and data.crop_pad == 4
    # the stored rows are CHW planes: pixel (c, y, x) is row[c * 1024 + y * 32 + x]
    raw = CIFAR10Unverified if name == "cifar10" else CIFAR100Unverified
    first = raw(str(tmp_path), train=True).data[0]  # (32, 32, 3) HWC
    assert torch.equal(data.train_x[0].permute(1, 2, 0), torch.from_numpy(first))
    x, y = next(data.test_batches(4))
    expected = data.test_x[:4].float() - 255 * torch.tensor(cifar.STATS[name][0]).view(1, 3, 1, 1)
    expected /= 255 * torch.tensor(cifar.STATS[name][1]).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("imagenette", "imagenette2-160/train"),
        ("imagefolder", "train/<class>/<image>"),
    ],
)
def test_missing_data_is_one_line_before_training(name: str, where: str, tmp_path: Path):
    with pytest.raises(DataError) as err:
        plan([f"data={name}", f"data.root={tmp_path / 'nowhere'}"])
    message = str(err.value)
    assert "\n" not in message and where in message and str(tmp_path / "nowhere") in message
    if name != "imagefolder":
        assert "data.download=true" in message


def test_cifar_data_error_also_from_the_loader(tmp_path: Path):
    with pytest.raises(DataError, match="cifar-10-batches-py.*data.download=true"):
        create_dataset("cifar10", root=str(tmp_path))


def test_imagenette_tree_is_decoded_resized_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write_imagenette(tmp_path)
    calls = []
    decode = loader.decode_square
    monkeypatch.setattr(loader, "decode_square", lambda *a: calls.append(a[0]) or decode(*a))
    data = create_dataset("imagenette", root=str(tmp_path), image_size=24, workers=0)
    assert data.input_shape == (3, 24, 24) and data.num_classes == 10
    assert len(calls) == 12 + 6, "every file decoded before training"
    generator = torch.Generator().manual_seed(0)
    first = [y for _, y in data.train_batches(4, generator)]
    assert sorted(torch.cat(first).tolist()) == sorted([0, 1, 2] * 4)
    second = list(data.train_batches(4, generator))
    assert all(x.shape == (4, 3, 24, 24) and x.dtype == torch.float32 for x, _ in second)
    labels = torch.cat([y for _, y in data.test_batches(100)])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert len(calls) == 18, "epochs come from the decoded cache"
    again = create_dataset("imagenette", root=str(tmp_path), image_size=24, workers=0)
    assert again.train is data.train and len(calls) == 18  # one decoding per process
    assert sorted(IMAGENETTE_WNIDS) == list(IMAGENETTE_WNIDS)


def test_the_check_before_training_decodes_once_for_the_run(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
):
    """``poolbench run``'s check and its run (same process) share one decoding."""
    root = write_imagefolder(tmp_path / "data")
    calls = []
    decode = loader.decode_square
    monkeypatch.setattr(loader, "decode_square", lambda *a: calls.append(a[0]) or decode(*a))
    args = ["run", "data=imagefolder", f"data.root={root}", "data.image_size=17", *FAST]
    result = CliRunner().invoke(app, [*args, "data.workers=0"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 2 * (6 + 2)  # each file of train/ and val/ once


@pytest.fixture
def damaged_folder(tmp_path: Path) -> Path:
    root = write_imagefolder(tmp_path / "data")
    cat = root / "train" / "cat"
    (cat / "broken.png").write_bytes((cat / "1.png").read_bytes()[:60])
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_a_file_that_does_not_decode_fails_before_training_naming_it(
    damaged_folder: Path, workdir: Path, workers: int
):
    done = _installed(
        "run", "data=imagefolder", f"data.root={damaged_folder}", f"data.workers={workers}", *FAST
    )
    assert done.returncode == 2, done.stdout + done.stderr
    broken = damaged_folder / "train" / "cat" / "broken.png"
    assert done.stderr == (
        f"error: cannot decode image {broken}: image file is truncated; remove or replace it\n"
    )
    assert done.stdout == "" and not Path("results").exists()


def test_entries_that_are_not_images_are_skipped_and_logged(tmp_path: Path, workdir: Path):
    root = write_imagefolder(tmp_path / "data")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "dog" / ".DS_Store").write_bytes(b"\0\1")
    (root / "val" / "dog" / "sub").mkdir()
    done = _installed("run", "data=imagefolder", f"data.root={root}", "data.workers=0", *FAST)
    assert done.returncode == 0, done.stderr
    (log,) = Path("results/runs").glob("*/poolbench.log")
    assert (
        f"imagefolder: skipped 3 entries of {root} without an image extension "
        "(.jpg, .jpeg, .png, .bmp, .webp): train/cat/notes.txt, train/dog/.DS_Store, val/dog/sub"
    ) in log.read_text()
    assert "skipped 3 entries" in done.stdout  # and on the terminal, once


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("one class", "expected at least 2 class folders in {root}/train, found 1 (cat)"),
        ("empty class", "class folder {root}/train/dog holds no .jpg/.jpeg/.png/.bmp/.webp image"),
    ],
)
def test_a_folder_that_cannot_teach_anything_is_refused_before_training(
    tmp_path: Path, workdir: Path, layout: str, expected: str
):
    root = tmp_path / "data"
    if layout == "one class":
        write_imagefolder(root, classes=("cat",))
    else:
        write_imagefolder(root)
        for f in (root / "train" / "dog").iterdir():
            f.unlink()
    result = CliRunner().invoke(app, ["run", "data=imagefolder", f"data.root={root}", *FAST])
    assert result.exit_code == 2
    assert result.output == f"error: imagefolder: {expected.format(root=root)}" + (
        ": one class is learnt perfectly by any model\n" if layout == "one class" else "\n"
    )
    assert not Path("results").exists()


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_a_truncated_cifar_batch_is_named_as_such_not_as_missing(
    name: str, tmp_path: Path, unverified_cifar: None
):
    write_cifar(tmp_path, name)
    batch = tmp_path / cifar.FOLDERS[name] / ("data_batch_3" if name == "cifar10" else "test")
    batch.write_bytes(batch.read_bytes()[:1000])
    with pytest.raises(DataError) as err:
        plan([f"data={name}", f"data.root={tmp_path}"])
    message = str(err.value)
    assert message.startswith(f"{name}: {batch} is truncated or corrupt (1,000 bytes; it does ")
    assert "expected the python batches" not in message
    batch.unlink()
    with pytest.raises(DataError, match=f"expected the python batches .* missing: {batch.name};"):
        plan([f"data={name}", f"data.root={tmp_path}"])


def test_a_cifar_batch_whose_md5_is_wrong_is_named(tmp_path: Path):
    """With torchvision's own checksums (the fixtures hold other bytes than the real files)."""
    write_cifar(tmp_path)
    with pytest.raises(DataError) as err:
        plan(["data=cifar10", f"data.root={tmp_path}"])
    first = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    assert str(err.value).startswith(f"cifar10: {first} is truncated or corrupt (")
    assert "its md5 is not the published one" in str(err.value)


def _installed(*args: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("poolbench"))
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)


def test_cached_images_equal_fresh_decodes(tmp_path: Path):
    write_imagefolder(tmp_path)
    cached = create_dataset("imagefolder", root=str(tmp_path), image_size=16, workers=0)
    fresh = create_dataset("imagefolder", root=str(tmp_path), image_size=16, workers=0, cache=False)
    for i in range(len(cached.train)):
        a, la = cached.train[i]
        b, lb = fresh.train[i]
        assert torch.equal(a, b) and la == lb
    grey = loader.decode_square(tmp_path / "train" / "cat" / "1.png", 16)
    assert grey.shape == (3, 16, 16)  # grey-scale files become RGB


def test_imagefolder_with_workers_shares_the_cache(tmp_path: Path):
    write_imagefolder(tmp_path)
    data = create_dataset("imagefolder", root=str(tmp_path), image_size=16, workers=2)
    data.split_validation(0.25, seed=0)
    assert len(data.train) == 9 and len(data.val) == 3
    generator = torch.Generator().manual_seed(0)
    seen = torch.cat([y for _, y in data.train_batches(3, generator)])
    assert len(seen) == 9
    # worker processes decoded into the shared mapping: the parent sees every train image filled
    filled = data.train.dataset.filled
    train_idx = data.train.indices
    assert all(filled[i] == 1 for i in train_idx)
    assert data.num_classes == 2


def test_imagefolder_class_folders_must_match(tmp_path: Path):
    write_imagefolder(tmp_path)
    (tmp_path / "val" / "cat").rename(tmp_path / "val" / "cow")
    with pytest.raises(DataError, match="same class folders.*cat, cow"):
        create_dataset("imagefolder", root=str(tmp_path))


def test_shapes_is_seeded_sized_and_balanced():
    a = create_dataset("shapes", image_size=20, train_size=300, test_size=60, seed=3)
    b = create_dataset("shapes", image_size=20, train_size=300, test_size=60, seed=3)
    c = create_dataset("shapes", image_size=20, train_size=300, test_size=60, seed=4)
    assert a.train_x.shape == (300, 3, 20, 20) and a.test_x.shape == (60, 3, 20, 20)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert not torch.equal(a.train_x[:60], a.test_x)  # train and test are separate draws
    counts = torch.bincount(a.train_y, minlength=6)
    assert counts.min() > 25
    with pytest.raises(ConfigError, match="min_scale <= max_scale"):
        create_dataset("shapes", min_scale=0.4, max_scale=0.2)


@pytest.mark.parametrize("name", ["cifar10", "imagefolder"])
def test_a_run_end_to_end_from_fixture_files(
    name: str, tmp_path: Path, workdir: Path, unverified_cifar: None
):
    root = tmp_path / "data"
    write_cifar(root) if name == "cifar10" else write_imagefolder(root)
    extra = ["data.workers=0", "data.image_size=16"] if name == "imagefolder" else []
    run = plan(
        [
            f"data={name}",
            f"data.root={root}",
            "train.epochs=1",
            "train.eval_every=1",
            "train.val_fraction=0.1",
            "model.widths=[8,8,8]",
            "latency_batch=2",
            "latency_repeats=1",
            *extra,
        ]
    ).runs[0]
    record = execute(run, workdir / "run")
    assert record["status"] == "ok", record["error"]
    assert 0 <= record["test_acc"] <= 1 and record["val_acc"] is not None


@pytest.mark.parametrize("name", ["digits", "shapes", "tensors"])
def test_normalisation_is_measured_without_the_validation_images(name: str, tmp_path: Path):
    from poolbench.data.memory import channel_stats
    from tests.helpers.datafiles import write_tensors

    params = (
        {"path": str(write_tensors(tmp_path / "t.npz", n_train=60))} if name == "tensors" else {}
    )
    data = create_dataset(name, **params)
    before = data.mean
    data.split_validation(0.3, seed=0)
    assert (data.mean, data.std) == channel_stats(data.train_x)
    assert data.mean != before  # the held-out images no longer count


def test_reflect_padding_wider_than_the_image_is_refused_not_zero_filled():
    from poolbench.core.errors import ConfigError

    data = create_dataset("digits", image_size=8)
    assert data.configure_augmentation(translate=7, pad_mode="reflect").translate == 7
    with pytest.raises(ConfigError, match="pad_mode=reflect needs a translation under"):
        data.configure_augmentation(translate=8, pad_mode="reflect")
    assert data.configure_augmentation(translate=8, pad_mode="zeros").translate == 8
