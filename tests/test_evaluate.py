"""genlab-eval: KID's estimate, the streaming reference statistics, a checkpoint scored end
to end with the classifier features and its cache reused, the one-line errors."""

import json
import math
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genlab import evaluate
from genlab.errors import ConfigError
from genlab.metrics import frechet_distance
from genlab.metrics.distances import frechet_from_stats
from genlab.metrics.features import inception_missing
from genlab.metrics.kid import kid, mmd2_unbiased
from genlab.metrics.reference import (
    RunningGaussian,
    SeededSubset,
    compute_reference,
    gaussian_fit,
)

from helpers import compose_train

X = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
Y = [[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]


def test_mmd2_unbiased_by_hand():
    def k(a, b):  # (a.b / d + 1)^3 with d = 2
        return (sum(p * q for p, q in zip(a, b, strict=True)) / 2 + 1) ** 3

    m = n = 3
    xx = sum(k(X[i], X[j]) for i in range(m) for j in range(m) if i != j)  # 2 (1 + 3.375 + 3.375)
    yy = sum(k(Y[i], Y[j]) for i in range(n) for j in range(n) if i != j)  # 6 pairs of 1
    xy = sum(k(a, b) for a in X for b in Y)  # four pairs at 8, five at 1
    assert (xx, yy, xy) == (15.5, 6.0, 37.0)
    by_hand = xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n)
    assert by_hand == pytest.approx(31 / 12 + 1 - 74 / 9) == pytest.approx(-167 / 36)

    x, y = torch.tensor(X), torch.tensor(Y)
    assert mmd2_unbiased(x, y) == pytest.approx(-167 / 36, abs=1e-12)
    # every subset is the whole set (in another order): the mean is the estimate, the std 0
    mean, std, size = kid(x, y, subsets=4, subset_size=1000)
    assert size == 3 and mean == pytest.approx(-167 / 36) and std == pytest.approx(0, abs=1e-12)


def test_kid_separates_distributions_and_is_seeded():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(600, 8, generator=generator)
    same = torch.randn(600, 8, generator=generator)
    shifted = same + 1.0
    near, _, _ = kid(real, same, subsets=20, subset_size=200)
    far, _, _ = kid(real, shifted, subsets=20, subset_size=200)
    assert abs(near) < 0.02 < far
    assert kid(real, shifted, 5, 100, seed=3) == kid(real, shifted, 5, 100, seed=3)


def test_streaming_statistics_match_numpy_and_frechet_distance():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=generator) * torch.arange(1, 7) + 3
    b = torch.randn(300, 6, generator=generator)
    stats = RunningGaussian()
    for chunk in a.split([1, 7, 100, 250, 142]):  # uneven chunks, one of a single row
        stats.update(chunk)
    assert stats.count == 500
    np.testing.assert_allclose(stats.mean.numpy(), a.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(
        stats.covariance.numpy(), np.cov(a.double().numpy(), rowvar=False), rtol=1e-10
    )
    from_stats = frechet_from_stats(stats.mean, stats.covariance, *gaussian_fit(b))
    assert from_stats == pytest.approx(frechet_distance(a, b), rel=1e-9)


def test_seeded_subset_is_a_seeded_sample_of_the_stream():
    rows = torch.arange(1000.0)[:, None]

    def subset(seed):
        kept = SeededSubset(100, seed)
        for chunk in rows.split(64):
            kept.update(chunk)
        return kept.rows

    first = subset(0)
    assert first.shape == (100, 1) and len(first.unique()) == 100
    assert torch.equal(first, subset(0)) and not torch.equal(first, subset(1))
    assert first.mean() == pytest.approx(500, abs=100)  # spread over the stream, not its start
    reference = compute_reference(rows.split(300), keep=5000)
    assert reference.count == 1000 and len(reference.features) == 1000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A DCGAN on mnist_mini after two batches: its last.ckpt."""
    from genlab.train import train

    output_dir = tmp_path_factory.mktemp("dcgan")
    overrides = [
        "experiment=dcgan_mnist_mini", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.enable_progress_bar=false", "logger=none",
        "~callbacks.sample_quality", "~callbacks.sample_plots",
    ]  # fmt: skip
    train(compose_train(overrides, output_dir))
    return output_dir / "checkpoints" / "last.ckpt"


def run_eval(capsys, *args: str) -> tuple[int, str, str]:
    """genlab-eval ARGS through its main: (exit status, stdout, stderr)."""
    code = 0
    try:
        evaluate.main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(capsys, *args: str) -> str:
    code, _, err = run_eval(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    return lines[0]


def test_eval_scores_a_checkpoint_and_reuses_the_reference(checkpoint, tmp_path, capsys):
    # the classifier from the shared data folder, the reference statistics in a new one
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shared = Path(os.environ["GENLAB_DATA"]) / "classifiers"
    shared.mkdir(parents=True, exist_ok=True)
    (data_dir / "classifiers").symlink_to(shared, target_is_directory=True)
    args = [f"ckpt={checkpoint}", "n=500", "metrics=[fid,kid,prdc]", f"data_dir={data_dir}"]

    code, out, err = run_eval(capsys, *args)
    assert code == 0, err
    saved = json.loads((checkpoint.parent / "eval.json").read_text())
    assert saved["features"] == "classifier" and saved["feature_extractor"].startswith(
        "classifier-"
    )
    assert (saved["n"], saved["model"], saved["data"]) == (500, "dcgan", "mnist_mini")
    assert set(saved["metrics"]) == {
        "fid", "kid", "kid_std", "precision", "recall", "density", "coverage",
    }  # fmt: skip
    assert all(math.isfinite(v) for v in saved["metrics"].values())
    assert saved["metrics"]["fid"] > 0
    assert saved["reference"]["images"] == saved["reference"]["kept"] == 4000
    assert saved["settings"] == {
        "kid_subsets": 100, "kid_subset_size": 500, "prdc_k": 5, "prdc_samples": 500,
    }  # fmt: skip
    assert not saved["reference"]["from_cache"]
    assert "classifier features: 500 samples against 4000 training images" in out
    assert re.search(rf"^fid +{saved['metrics']['fid']:.4f}$", out, re.MULTILINE), out

    cache = Path(saved["reference"]["cache"])
    assert cache.parent == data_dir / "references"
    written = cache.stat().st_mtime_ns
    code, out, err = run_eval(capsys, *args, f"out={tmp_path / 'again.json'}")
    assert code == 0, err
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["reference"]["from_cache"] and cache.stat().st_mtime_ns == written
    assert "read from" in out
    assert again["metrics"] == saved["metrics"]  # the same seed, the same numbers


@pytest.mark.parametrize(
    "arg, message",
    [
        ("n=0", "n must be a whole number >= 2 (got 0)"),
        ("n=-5", "n must be a whole number >= 2 (got -5)"),
        ("metrics=[fid,bogus]", "unknown metric bogus; the metrics are fid, kid, prdc"),
        ("features=vgg", "features must be one of auto, inception, classifier"),
        ("size=3", "unknown option size; the options are ckpt, n, metrics"),
        ("seed=abc", "seed must be a whole number (got 'abc')"),
    ],
)
def test_eval_bad_values(arg, message, capsys):
    assert message in one_line(capsys, "ckpt=x.ckpt", arg)


def test_eval_missing_checkpoint(tmp_path, capsys):
    assert "checkpoint not found" in one_line(capsys, f"ckpt={tmp_path / 'none.ckpt'}")


@pytest.mark.skipif(inception_missing() is None, reason="the Inception weights are here")
def test_eval_inception_without_weights(checkpoint, capsys):
    line = one_line(capsys, f"ckpt={checkpoint}", "features=inception")
    assert "pt_inception-2015-12-05-6726825d.pth" in line and "hub" in line
    assert "features=classifier" in line


@pytest.mark.skipif(inception_missing() is None, reason="the Inception weights are here")
def test_unlabelled_data_without_inception_names_the_fix(tmp_path):
    args = evaluate.parse_args(["ckpt=x.ckpt"])
    with pytest.raises(ConfigError) as info:
        evaluate.choose_features(args, SimpleNamespace(labelled=False), tmp_path)
    message = str(info.value)
    assert message.startswith("features=auto: the data has no labels for the digit classifier")
    assert "pt_inception-2015-12-05-6726825d.pth" in message and "copy the file there" in message


def test_eval_refuses_a_translation_model(run_train, capsys):
    _, out = run_train(
        ["model=pix2pix", "data=digits_edges", "model.generator.width=8",
         "model.discriminator.width=8", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
         "~callbacks.sample_quality", "~callbacks.sample_plots", "logger=none",
         "trainer.enable_progress_bar=false"]
    )  # fmt: skip
    line = one_line(capsys, f"ckpt={out / 'checkpoints' / 'last.ckpt'}")
    assert "translates images rather than sample them" in line and "per-epoch" in line
