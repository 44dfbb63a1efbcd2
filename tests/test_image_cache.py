"""Images stored as uint8, the folder cache, sets read from disk and random flips."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data.cache import Decoding, cached_folder
from genlab.data.disk import DiskImages
from genlab.data.images import ImageFolderDataModule, MnistMiniDataModule
from genlab.data.loaders import InMemoryBatchLoader
from genlab.data.pixels import flip_horizontally, flip_masks, to_model_range
from genlab.errors import DataError

from helpers import cli_in_process, one_line_error


def mixed_folder(root: Path, n: int = 24) -> Path:
    """Images of several modes (RGB, RGBA, L, P) and sizes, in two class folders."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        size = (12 + i % 5, 16 + i % 3)
        pixels = rng.integers(0, 256, (*size, 4), dtype=np.uint8)
        image = Image.fromarray(pixels, "RGBA")
        image = [image, image.convert("RGB"), image.convert("L"), image.convert("P")][i % 4]
        image.save(folder / f"{i:03d}.png")
    return root


def folder_data(root: Path, tmp_path: Path, **settings) -> ImageFolderDataModule:
    data = ImageFolderDataModule(
        root=str(root), channels=3, image_size=8, batch_size=4, cache_dir=str(tmp_path / "cache"),
        **settings,
    )  # fmt: skip
    data.setup()
    return data


def test_stored_images_are_uint8_and_batches_float_in_model_range():
    data = MnistMiniDataModule(batch_size=64)
    data.setup()
    images, labels = data.train_set
    assert images.dtype == torch.uint8 and images.shape == (4000, 1, 28, 28)
    assert images.element_size() * images.nelement() == 4000 * 784  # a quarter of float32
    x, y = next(iter(data.train_dataloader()))
    assert x.dtype == torch.float32 and x.min() == -1 and x.max() == 1
    real, _ = data.eval_set()
    assert real.dtype == torch.float32 and torch.equal(real, to_model_range(data.val_set[0]))


def test_a_folder_of_mixed_modes_and_sizes_is_converted_and_cached(tmp_path):
    root = mixed_folder(tmp_path / "images")
    data = folder_data(root, tmp_path)
    images, labels = data.train_set
    assert isinstance(images, torch.Tensor) and images.dtype == torch.uint8  # auto: fits
    assert images.shape[1:] == (3, 8, 8) and len(images) + len(data.val_set[0]) == 24
    assert sorted(set(labels.tolist())) == [0, 1]
    (cache,) = [p for p in (tmp_path / "cache").iterdir() if p.suffix != ".lock"]
    assert json.loads((cache / "info.json").read_text())["failures"] == []
    # the cache holds each file as PIL decodes it
    files, _ = data.listing()
    row = files.index(root / "a" / "001.png")  # an RGB file
    expected = Image.open(files[row]).resize((8, 8), Image.BILINEAR)
    stored = np.load(cache / "images.npy")
    assert np.array_equal(stored[row], np.asarray(expected).transpose(2, 0, 1))


def test_the_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path):
    root = mixed_folder(tmp_path / "images", n=8)
    files = sorted(root.glob("*/*.png"))
    decoding = Decoding(channels=3, image_size=8)
    first = cached_folder(files, decoding, tmp_path / "cache")
    again = cached_folder(files, decoding, tmp_path / "cache")
    assert first.built and not again.built and again.folder == first.folder
    os.utime(files[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = cached_folder(files, decoding, tmp_path / "cache")
    assert changed.built and changed.folder != first.folder
    resized = cached_folder(files, Decoding(channels=3, image_size=16), tmp_path / "cache")
    assert resized.folder not in (first.folder, changed.folder)


def test_files_that_do_not_decode_are_skipped_and_named(tmp_path, caplog):
    root = mixed_folder(tmp_path / "images", n=10)
    (root / "a" / "notes.png").write_text("not an image")
    (root / "b" / "truncated.jpg").write_bytes(jpeg_bytes()[:200])
    data = folder_data(root, tmp_path)
    assert len(data.train_set[0]) + len(data.val_set[0]) == 10
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"2 of 12 files in {root} do not decode and are left out: ")
    assert "a/notes.png (UnidentifiedImageError" in warning
    assert "b/truncated.jpg (OSError" in warning


def jpeg_bytes() -> bytes:
    path = Path(os.environ["GENLAB_DATA"]) / "sample.jpg"
    if not path.is_file():
        Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8)).save(path, quality=90)
    return path.read_bytes()


def test_a_folder_where_nothing_decodes_stops_with_one_line(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.png").write_text("text")
    with pytest.raises(DataError, match=r"^none of the 3 files in .* decodes as an image \(first"):
        folder_data(root, tmp_path)


def test_a_set_on_disk_gives_the_same_batches_and_resumes_exactly(tmp_path):
    root = mixed_folder(tmp_path / "images", n=40)
    held = folder_data(root, tmp_path, in_memory=True)
    mapped = folder_data(root, tmp_path, in_memory=False)
    assert isinstance(mapped.train_set[0], DiskImages)
    assert torch.equal(mapped.train_set[0].load(), held.train_set[0])
    for a, b in zip(held.eval_set(), mapped.eval_set(), strict=True):
        assert torch.equal(a, b)
    loaders = [held.train_dataloader(), mapped.train_dataloader()]
    for loader in loaders:
        loader.set_epoch(3)
    for (x, y), (x_mapped, y_mapped) in zip(*loaders, strict=True):
        assert torch.equal(x, x_mapped) and torch.equal(y, y_mapped)
    # stopped after two batches, resumed from the loader's state: the rest of the same order
    whole = [batch[0] for batch in mapped.train_dataloader()]
    loader = mapped.train_dataloader()
    iterator = iter(loader)
    next(iterator), next(iterator)
    resumed = mapped.train_dataloader()
    resumed.load_state_dict(loader.state_dict())
    rest = [batch[0] for batch in resumed]
    assert len(rest) == len(whole) - 2
    assert all(torch.equal(a, b) for a, b in zip(rest, whole[2:], strict=True))
    # DDP's spawned processes get it pickled: the path travels, the file is opened again
    copy = pickle.loads(pickle.dumps(mapped.train_set[0]))
    assert torch.equal(copy.load(), held.train_set[0])


def test_in_memory_auto_leaves_a_set_larger_than_its_share_on_disk(tmp_path, monkeypatch):
    import genlab.data.files as files

    root = mixed_folder(tmp_path / "images", n=8)
    monkeypatch.setattr(files, "available_memory", lambda: 100)
    assert isinstance(folder_data(root, tmp_path).train_set[0], DiskImages)


def build_in_a_child(root: Path, cache: Path, slow: bool) -> subprocess.Popen:
    """A process that builds the cache of `root`, one file every 0.2 s when `slow`."""
    code = f"""
import sys, time
from pathlib import Path
import genlab.data.cache as cache
if {slow}:
    decode = cache.decode
    cache.decode = lambda *args: (time.sleep(0.2), decode(*args))[1]
files = sorted(Path({str(root)!r}).glob("*/*.png"))
built = cache.cached_folder(files, cache.Decoding(3, 8), {str(cache)!r}, workers=1)
print(built.folder)
"""
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_a_build_killed_midway_leaves_no_cache_that_a_later_run_trusts(tmp_path):
    root = mixed_folder(tmp_path / "images", n=30)
    cache = tmp_path / "cache"
    child = build_in_a_child(root, cache, slow=True)
    deadline = time.time() + 60
    while not list(cache.glob("*.building-*/images.npy")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few files decoded
    child.send_signal(signal.SIGKILL)
    child.wait()
    left = [p for p in cache.iterdir() if p.suffix != ".lock"]
    assert left and all(".building-" in p.name for p in left)  # nothing under the cache's name
    files = sorted(root.glob("*/*.png"))
    built = cached_folder(files, Decoding(3, 8), cache)
    assert built.built and built.kept.all()
    assert [p for p in cache.iterdir() if p.suffix != ".lock"] == [built.folder]  # removed


def test_two_runs_building_one_cache_at_once_end_with_one_good_cache(tmp_path):
    root = mixed_folder(tmp_path / "images", n=30)
    cache = tmp_path / "cache"
    children = [build_in_a_child(root, cache, slow=False) for _ in range(2)]
    folders = {child.communicate(timeout=120)[0].strip() for child in children}
    assert all(child.returncode == 0 for child in children)
    (folder,) = folders
    assert [str(p) for p in cache.iterdir() if p.suffix != ".lock"] == [folder]
    files = sorted(root.glob("*/*.png"))
    found = cached_folder(files, Decoding(3, 8), cache)
    assert not found.built and found.kept.all() and str(found.folder) == folder


def test_flips_mirror_some_images_the_same_way_every_time():
    images = torch.arange(2 * 1 * 2 * 3, dtype=torch.uint8).view(2, 1, 2, 3).repeat(32, 1, 1, 1)
    masks = flip_masks(10, 64, seed=1, epoch=0)
    assert torch.equal(masks, flip_masks(10, 64, seed=1, epoch=0))
    assert not torch.equal(masks, flip_masks(10, 64, seed=1, epoch=1))
    mask = masks[5]
    assert 16 < int(mask.sum()) < 48
    flipped = flip_horizontally(images, mask)
    assert torch.equal(flipped[mask], images[mask].flip(-1))
    assert torch.equal(flipped[~mask], images[~mask])


def test_a_flipping_loader_flips_pairs_together_and_resumes_with_the_same_flips():
    a = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8)
    labels = torch.arange(40)
    loader = InMemoryBatchLoader((a, a.clone(), labels), batch_size=8, seed=2, flip=True)
    batches = list(loader)
    assert all(torch.equal(x, y) for x, y, _ in batches)  # one coin for both images
    plain = [to_model_range(a[index]) for _, _, index in batches]
    flipped = [not torch.equal(x, p) for (x, _, _), p in zip(batches, plain, strict=True)]
    assert any(flipped)
    assert all(
        torch.equal(x[i], p[i]) or torch.equal(x[i], p[i].flip(-1))
        for (x, _, _), p in zip(batches, plain, strict=True)
        for i in range(8)
    )
    resumed = InMemoryBatchLoader((a, a.clone(), labels), batch_size=8, seed=2, flip=True)
    resumed.load_state_dict({"epoch": 0, "served": 3})
    assert all(torch.equal(x, y[0]) for (x, *_), y in zip(resumed, batches[3:], strict=True))


def test_flips_on_points_and_an_unknown_in_memory_setting_stop_with_one_line(tmp_path):
    flip = one_line_error(
        cli_in_process("genlab-train", "data=ring", "data.flip=true", cwd=tmp_path)
    )
    assert flip == (
        "genlab-train: error: data.flip mirrors images, and this dataset holds 2-D points: "
        "drop data.flip=true"
    )
    root = mixed_folder(tmp_path / "images", n=4)
    maybe = one_line_error(
        cli_in_process(
            "genlab-train",
            "model=dcgan",
            "data=image_folder",
            f"data.root={root}",
            "data.in_memory=maybe",
            cwd=tmp_path,
        )  # fmt: skip
    )
    assert "data.in_memory must be auto, true or false (got 'maybe')" in maybe
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.ckpt"))


def test_a_folder_read_from_disk_trains_with_flips(run_train, tmp_path):
    root = mixed_folder(tmp_path / "images", n=40)
    metrics, _ = run_train(
        [
            "model=dcgan",
            "data=image_folder",
            f"data.root={root}",
            "data.image_size=16",
            "data.in_memory=false",
            "data.flip=true",
            "data.batch_size=8",
            "debug=fdr",
        ]  # fmt: skip
    )
    assert np.isfinite(metrics["loss/g"])


def test_ddp_ranks_read_one_cache_from_disk_and_stay_in_sync(tmp_path):
    """Two DDP processes over a folder read from disk, with flips: both read the one cache
    (built once, nothing left over) and the replicas end with identical weights."""
    from helpers import SHORT, cli

    root = mixed_folder(tmp_path / "images", n=48)
    dump = tmp_path / "weights"
    result = cli(
        "genlab-train", "hardware=ddp_cpu", "model=dcgan", "data=image_folder",
        f"data.root={root}", "data.image_size=16", "data.in_memory=false", "data.flip=true",
        "data.batch_size=4", *SHORT,
        f"paths.log_dir={tmp_path / 'outputs'}", f"paths.data_dir={tmp_path / 'data'}",
        "+callbacks.dump._target_=helpers.DumpGeneratorWeights", f"+callbacks.dump.dirpath={dump}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    caches = [p for p in (tmp_path / "data" / "cache").iterdir() if p.suffix != ".lock"]
    assert len(caches) == 1  # one cache, no leftovers
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)


def test_paired_halves_stay_paired_when_one_half_fails_and_an_empty_val_is_absent(tmp_path):
    """A side-by-side file whose A half cannot be read as asked (a LAB image has no grey
    conversion in Pillow) is left out of both domains, so every A stays beside its own B;
    an empty val/ is no held-out folder."""
    from genlab.data.pairs import PairedFolderDataModule

    (tmp_path / "train").mkdir()
    for i in range(6):
        pixels = np.zeros((8, 16, 3), dtype=np.uint8)
        pixels[:, :8], pixels[:, 8:] = 10 * i, 10 * i + 5  # A = 10i, B = 10i + 5
        Image.fromarray(pixels).save(tmp_path / "train" / f"{i}.png")
    Image.new("LAB", (16, 8)).save(tmp_path / "train" / "3a.tif")  # sorts among the others
    (tmp_path / "val").mkdir()
    data = PairedFolderDataModule(
        root=str(tmp_path), channels=1, channels_b=3, image_size=8, batch_size=1,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    data.setup()
    (a, b, _, _), (val_a, val_b, _, _) = data.train_set, data.val_set
    assert len(a) + len(val_a) == 6  # the LAB file left out; val/ was empty: held out of train/
    for x, y in ((a, b), (val_a, val_b)):
        assert torch.equal(x.float() + 5, y[:, :1].float())  # every A beside its own B
