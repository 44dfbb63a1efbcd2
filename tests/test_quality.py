"""The quality targets, as a user runs them. Minutes each: `make test-slow`."""

import json
import math
import time

import pytest

from helpers import cli

pytestmark = pytest.mark.slow


def train(tmp_path, *overrides: str) -> tuple[dict, float]:
    started = time.time()
    result = cli(
        "genlab-train",
        *overrides,
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / "metrics.json").read_text())["metrics"], time.time() - started


def test_wgan_gp_covers_the_ring_with_defaults(tmp_path):
    metrics, seconds = train(tmp_path, "model=wgan_gp", "data=ring")
    assert metrics["eval/modes"] == 8
    assert metrics["eval/hq"] >= 0.9
    assert seconds < 180 * 1.5  # the 3-minute target, with slack for a loaded machine


def test_wgan_gp_recipe_beats_pacgan4_on_the_ring(tmp_path):
    # PacGAN4 (Lin et al. 2018, Table 1): 7.8 modes, 95.9% high-quality samples, KL 0.07
    metrics, _ = train(tmp_path, "experiment=wgan_gp_ring")
    assert metrics["eval/modes"] == 8
    assert metrics["eval/hq"] >= 0.97 and metrics["eval/reverse_kl"] <= 0.02


def test_wgan_gp_recipe_covers_the_grid(tmp_path):
    # PacGAN4: 24.8 modes, 93.6% high-quality samples, KL 0.04; the recipe's five seeds
    # (docs/models.md) reach every mode, hq 0.956 on average (0.947 to 0.962)
    metrics, _ = train(tmp_path, "experiment=wgan_gp_grid")
    assert metrics["eval/modes"] == 25
    assert metrics["eval/hq"] >= 0.945 and metrics["eval/reverse_kl"] <= 0.03


def test_gan_learns_both_moons(tmp_path):
    metrics, _ = train(tmp_path, "model=gan", "data=moons")
    # both moons: generated points are near real ones and the real set is covered
    assert metrics["eval/precision"] > 0.8 and metrics["eval/recall"] > 0.8
    assert (tmp_path / "samples" / "last.png").is_file()


def assert_sharp_digits(metrics: dict, conditional: bool = False) -> None:
    """The digit recipes' targets: samples inside the real digits' neighbourhoods (precision
    >= 0.85), fd within twice the real data's own floor, every class drawn (class entropy
    >= 0.98 ln 10), and for a conditional G the digit asked for (cond_acc >= 0.95)."""
    assert metrics["eval/precision"] >= 0.85
    assert metrics["eval/fd"] <= 2 * metrics["eval/fd_floor"]
    assert metrics["eval/class_entropy"] >= 0.98 * math.log(10)
    if conditional:
        assert metrics["eval/cond_acc"] >= 0.95


def test_dcgan_draws_sharp_digits_of_every_class(tmp_path):
    metrics, _ = train(tmp_path, "experiment=dcgan_mnist_mini")
    assert_sharp_digits(metrics)


def test_cgan_draws_the_digit_it_is_asked_for(tmp_path):
    metrics, _ = train(tmp_path, "experiment=cgan_mnist_mini")
    assert_sharp_digits(metrics, conditional=True)


def test_cvae_draws_the_digit_it_is_asked_for(tmp_path):
    metrics, _ = train(tmp_path, "experiment=cvae_mnist_mini")
    assert metrics["eval/cond_acc"] >= 0.9


def test_pixelcnn_likelihood_beats_the_vae_bound(tmp_path):
    vae, _ = train(tmp_path / "vae", "experiment=vae_mnist_mini")
    # the IWAE bound is above the ELBO and tightens with k
    assert vae["eval/iwae_k1"] < vae["eval/iwae_k10"] < vae["eval/iwae_k100"]
    assert vae["eval/iwae"] > vae["eval/elbo"]
    pixelcnn, _ = train(tmp_path / "pixelcnn", "experiment=pixelcnn_mnist_mini")
    # both on the same binarized held-out split, in nats per image
    assert pixelcnn["eval/nll"] < -vae["eval/iwae"]


def test_acgan_draws_the_digit_it_is_asked_for_with_variety(tmp_path):
    metrics, _ = train(tmp_path, "experiment=acgan_mnist_mini")
    assert_sharp_digits(metrics, conditional=True)
    # not one image per class: the generated digits cover the real ones
    assert metrics["eval/recall"] >= 0.5
