"""Image GANs on the embedded digits, torchvision's loading path and image folders."""

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from genlab.data.images import MnistMiniDataModule
from genlab.metrics import load_or_train_classifier
from genlab.sample import grid_layout, label_cycle

from helpers import SHORT, cli_in_process, compose_train, one_line_error, read_events, tb_run

IMAGE_MODELS = ["cgan", "dcgan", "wgan", "wgan_gp", "lsgan", "acgan", "tacgan"]


@pytest.mark.parametrize("model", IMAGE_MODELS)
@pytest.mark.parametrize("data", ["digits", "mnist_mini"])
def test_fast_dev_run(model, data, run_train):
    metrics, output_dir = run_train([f"model={model}", f"data={data}", "debug=fdr"])
    assert np.isfinite(metrics["loss/d"]) and np.isfinite(metrics["loss/g"])
    assert {"eval/fd", "eval/fd_floor", "eval/class_entropy", "eval/precision"} <= set(metrics)
    assert ("eval/cond_acc" in metrics) == (model in ("cgan", "acgan", "tacgan"))
    assert ("eval/recall_class_min" in metrics) == ("eval/cond_acc" in metrics)
    if model in ("acgan", "tacgan"):
        assert "d/aux_acc" in metrics and "loss/aux_g" in metrics
    assert ("loss/twin_d" in metrics) == (model == "tacgan")
    if model not in ("wgan", "wgan_gp"):
        assert "d/acc_real" in metrics and "d/acc_fake" in metrics


def test_cgan_with_mismatched_labels(run_train):
    """The cGAN recipe's GAN-CLS term runs: D scores real digits with wrong labels."""
    metrics, _ = run_train(["experiment=cgan_mnist_mini", "debug=fdr"])
    assert np.isfinite(metrics["loss/d"]) and np.isfinite(metrics["loss/mismatched_d"])
    assert 0 <= metrics["eval/cond_acc"] <= 1


def test_short_run_shows_grids_and_metrics(run_train):
    metrics, output_dir = run_train(
        ["model=acgan", "data=digits", *SHORT, "trainer.log_every_n_steps=2"]
    )
    events = read_events(tb_run(output_dir))
    grids = events.Images("samples/grid")
    assert [g.step for g in grids] == [0, 1]
    # a conditional grid has one row per class: 10 rows of 32-pixel images with 2-pixel padding
    assert grids[-1].height == 10 * 34 + 2 and grids[-1].width == 8 * 34 + 2
    # digits are grey: one channel in TensorBoard and on disk
    assert Image.open(io.BytesIO(grids[-1].encoded_image_string)).mode == "L"
    assert Image.open(output_dir / "samples" / "epoch_001.png").mode == "L"
    scalars = set(events.Tags()["scalars"])
    assert {
        "eval/fd",
        "eval/fd_floor",
        "eval/class_entropy",
        "eval/cond_acc",
        "d/aux_acc",
    } <= scalars
    written = json.loads((output_dir / "metrics.json").read_text())["metrics"]
    assert written["eval/cond_acc"] == metrics["eval/cond_acc"]
    assert (output_dir / "samples" / "epoch_001.png").is_file()


def test_evaluation_runs_the_classifier_channels_last_and_reads_the_real_set_once(tmp_path):
    """The classifier comes back with channels-last weights and gives the features of the
    plain NCHW net; the held-out images go through it once per run, not once per epoch,
    and a different held-out set is read anew."""
    from genlab.callbacks.evaluation import SampleQuality
    from genlab.metrics.classifier import DigitClassifier

    data = MnistMiniDataModule()
    data.setup()
    images, labels = (t[:300] for t in data.real_set("train"))
    for _ in range(2):  # trained, then from the cache
        classifier, _, _ = load_or_train_classifier(images, labels, 10, tmp_path, epochs=1)
        second_conv = classifier.body[3].weight  # (the first, with one input channel, is both)
        assert second_conv.is_contiguous(memory_format=torch.channels_last)
        assert not second_conv.is_contiguous()
        assert not classifier.training
    plain = DigitClassifier(1, 10).eval()
    plain.load_state_dict(classifier.state_dict())
    x = data.eval_set()[0][:64]
    with torch.no_grad():
        assert torch.allclose(classifier.features(x), plain.features(x), atol=1e-5)

    quality = SampleQuality(cache_dir=str(tmp_path))
    quality.classifiers["data"] = classifier
    calls = []
    features = classifier.features
    classifier.features = lambda batch: calls.append(len(batch)) or features(batch)
    real, real_labels = data.eval_set()
    fake = torch.rand(200, 1, 28, 28) * 2 - 1
    first = quality.image_metrics(real, real_labels, fake, None, data)
    assert sum(calls) == len(real) + len(fake)
    calls.clear()
    assert quality.image_metrics(real, real_labels, fake, None, data) == first
    assert sum(calls) == len(fake)  # the real features came from the first evaluation
    calls.clear()
    quality.image_metrics(real[:500], real_labels[:500], fake, None, data)
    assert sum(calls) == 500 + len(fake)


def test_classifier_is_cached_by_content(tmp_path):
    data = MnistMiniDataModule()
    data.setup()
    images, labels = (t[:300] for t in data.real_set("train"))
    _, path, cached = load_or_train_classifier(images, labels, 10, tmp_path, epochs=1)
    assert not cached and path.is_file()
    stamp = path.stat().st_mtime_ns
    _, again, cached = load_or_train_classifier(images, labels, 10, tmp_path, epochs=1)
    assert cached and again == path and path.stat().st_mtime_ns == stamp
    _, other, cached = load_or_train_classifier(images[:200], labels[:200], 10, tmp_path, epochs=1)
    assert not cached and other != path  # other data, another classifier


def test_runs_share_the_cached_classifier(run_train):
    cache = Path(os.environ["GENLAB_DATA"]) / "classifiers"
    run_train(["model=dcgan", "data=digits", "debug=fdr"], name="first")
    before = {p: p.stat().st_mtime_ns for p in cache.glob("*.pt")}
    run_train(["model=dcgan", "data=digits", "debug=fdr"], name="second")
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*.pt")} == before


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of MNIST: magic (0, 0, dtype 0x08, ndim), big-endian sizes, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, n_train: int = 256, n_test: int = 64) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return root


def test_torchvision_mnist_from_idx_files(tmp_path, run_train):
    """data=mnist reads torchvision's IDX files: the pixels that were written, in [-1, 1],
    train and test split as written, and a run trains on them."""
    root = fake_mnist(tmp_path / "data")
    overrides = ["model=dcgan", "data=mnist", f"data.root={root}", "data.download=false"]
    data = instantiate(compose_train(overrides, tmp_path / "compose").data)
    data.setup()
    stored, _ = data.train_set
    images, labels = data.real_set("train")
    written = np.random.default_rng(0).integers(0, 256, (256, 28, 28))
    assert images.shape == (256, 1, 28, 28) and labels.tolist() == [i % 10 for i in range(256)]
    assert stored.dtype == torch.uint8 and np.array_equal(stored[0, 0].numpy(), written[0])
    assert np.allclose(images[0, 0].numpy(), written[0] / 127.5 - 1, atol=1e-6)
    assert len(data.eval_set()[0]) == 64
    metrics, _ = run_train([*overrides, "debug=fdr"])
    assert np.isfinite(metrics["loss/g"]) and metrics["eval/fd"] > 0


def test_missing_dataset_offline_says_where_it_looked(tmp_path):
    result = cli_in_process(
        "genlab-train",
        "data=mnist",
        f"data.root={tmp_path / 'nothing'}",
        "data.download=false",
        cwd=tmp_path,
    )
    message = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(tmp_path / "nothing") in message and "data=mnist_mini" in message


def image_folder(root: Path, classes: list[str] | None, per_class: int = 12) -> Path:
    rng = np.random.default_rng(1)
    for i, name in enumerate(classes or [""]):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}_{j}.png")
    return root


def test_image_folder_with_and_without_classes(tmp_path, run_train):
    labelled = image_folder(tmp_path / "labelled", ["cat", "dog", "fox"])
    metrics, _ = run_train(
        [
            "model=cgan",
            "data=image_folder",
            f"data.root={labelled}",
            "data.num_classes=3",
            "data.image_size=32",
            "data.batch_size=8",
            "debug=fdr",
        ],
        name="labelled",
    )
    assert "eval/cond_acc" in metrics
    flat = image_folder(tmp_path / "flat", None)
    metrics, output_dir = run_train(
        [
            "model=dcgan",
            "data=image_folder",
            f"data.root={flat}",
            "data.image_size=32",
            "data.batch_size=4",
            "debug=fdr",
        ],
        name="flat",
    )
    assert np.isfinite(metrics["loss/g"])
    grid = Image.open(output_dir / "samples" / "last.png")
    assert grid.size == (8 * 34 + 2, 8 * 34 + 2) and grid.mode == "RGB"  # 8 x 8 colour images


def test_bad_image_inputs(tmp_path):
    # through genlab-train's entry point, in this process (no 6 s interpreter start each)
    flat = image_folder(tmp_path / "flat", None)
    message = one_line_error(
        cli_in_process(
            "genlab-train",
            "model=cgan",
            "data=image_folder",
            f"data.root={flat}",
            "data.batch_size=4",
            cwd=tmp_path,
        )
    )
    assert "no known classes" in message or "no labels" in message

    empty = tmp_path / "empty"
    empty.mkdir()
    message = one_line_error(
        cli_in_process(
            "genlab-train", "model=dcgan", "data=image_folder", f"data.root={empty}", cwd=tmp_path
        )
    )
    assert "no images found" in message and str(empty) in message

    message = one_line_error(
        cli_in_process(
            "genlab-train",
            "model=dcgan",
            "data=mnist_mini",
            "model.generator.out_shape=[1,32,32]",
            cwd=tmp_path,
        )
    )
    assert "shape [1, 32, 32]" in message and "[1, 28, 28]" in message

    message = one_line_error(
        cli_in_process(
            "genlab-train", "model=dcgan", "data=mnist_mini", "data.image_size=5", cwd=tmp_path
        )
    )
    assert "image_size 5 is not supported" in message


def test_sample_images_from_a_checkpoint(run_train, tmp_path):
    _, run = run_train(["model=cgan", "data=digits", *SHORT, "logger=none"])
    out = tmp_path / "samples"
    result = cli_in_process(  # genlab-sample's own process is tested in test_cli
        "genlab-sample",
        f"ckpt={run / 'checkpoints/last.ckpt'}",
        "n=20",
        "labels=7",
        f"out={out}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    saved = torch.load(out / "samples.pt")
    assert saved["samples"].shape == (20, 1, 32, 32)
    assert saved["samples"].min() >= -1 and saved["samples"].max() <= 1
    assert saved["labels"].tolist() == [7] * 20

    # n=1000: samples.pt holds them all, samples.png the first 100, one column per class
    result = cli_in_process(
        "genlab-sample", f"ckpt={run / 'checkpoints/last.ckpt'}", "n=1000", f"out={out}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("samples.png (100 of 1000 samples)")
    saved = torch.load(out / "samples.pt")
    assert saved["samples"].shape == (1000, 1, 32, 32)
    assert saved["labels"].tolist() == [i % 10 for i in range(1000)]
    width, height = Image.open(out / "samples.png").size
    assert 0.5 <= width / height <= 2
    assert (width, height) == (10 * 34 + 2, 10 * 34 + 2)  # 10 x 10 images of 32 + 2 pixels


@pytest.mark.parametrize(
    "n, cycle, layout",
    [
        (1000, 1, (100, 10)),  # unconditional, or one class asked for: 10 x 10
        (1000, 10, (100, 10)),  # ten classes: one column each, ten rows
        (1000, 3, (99, 9)),  # three classes: three columns each, 11 full rows
        (1000, 26, (100, 10)),  # more classes than columns: near square
        (20, 10, (20, 10)),  # fewer than 100: all of them, still a column per class
        (20, 1, (20, 5)),
    ],
)
def test_sample_picture_layout(n, cycle, layout):
    """(images shown, images a row) in samples.png for n samples whose labels repeat every
    `cycle` samples."""
    assert grid_layout(n, cycle) == layout


def test_label_cycle():
    assert label_cycle(None) == 1
    assert label_cycle(torch.full((100,), 7)) == 1
    assert label_cycle(torch.arange(100) % 10) == 10
    assert label_cycle(torch.tensor([0, 1, 2] * 33 + [0])) == 3
    assert label_cycle(torch.tensor([0, 1, 2, 0, 1])) == 3


def test_inception_fid_without_weights_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    result = cli_in_process(
        "genlab-train",
        "model=dcgan",
        "data=digits",
        "debug=fdr",
        "callbacks.sample_quality.inception_fid=true",
        cwd=tmp_path,
    )
    message = one_line_error(result)
    assert "Inception" in message and (
        "genlab[fid]" in message or str(tmp_path / "torch") in message
    )


def test_real_digits_score_at_the_floor_and_noise_far_above(tmp_path):
    """fd of real training digits against held-out ones is close to fd_floor; noise is far off."""
    from genlab.callbacks.evaluation import SampleQuality

    # the split of the runs' seed: the classifier is then the one that the runs on mnist_mini
    # train for their evaluation (one classifier for the session, from the cache)
    data = MnistMiniDataModule(seed=compose_train(["data=mnist_mini"], tmp_path).seed)
    data.setup()
    quality = SampleQuality(cache_dir=str(Path(os.environ["GENLAB_DATA"]) / "classifiers"))
    real, real_labels = data.eval_set()
    train_images, train_labels = data.real_set("train")
    pick = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(0))[:2500]
    train_images, train_labels = train_images[pick], train_labels[pick]
    as_real = quality.image_metrics(real, real_labels, train_images, train_labels, data)
    assert as_real["fd"] < 1.5 * as_real["fd_floor"]
    assert as_real["real_acc"] > 0.95  # the classifier's own held-out accuracy
    assert as_real["cond_acc"] > 0.95 and as_real["class_entropy"] > 0.95 * np.log(10)
    assert as_real["recall_class_min"] > 0.8  # real digits of each class cover that class
    noise = torch.rand(2500, 1, 28, 28) * 2 - 1
    as_noise = quality.image_metrics(real, real_labels, noise, None, data)
    assert as_noise["fd"] > 10 * as_real["fd_floor"] and as_noise["precision"] < 0.1
