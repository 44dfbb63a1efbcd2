"""The quality smoke: short versions of four recipes, each under 100 s on a 2-core CPU, whose
thresholds were set from measured values with a margin, so that a change that ruins
sample quality fails `make test`. The full targets are in test_quality.py (`make test-slow`).

Measured on 2026-11-30 (2-core CPU, seeds 42 / 1 / 2; the tests run seed 42):
- ring, WGAN-GP, 6 epochs: 8 / 8 / 8 modes, hq 0.64 / 0.41 / 0.67, reverse KL 0.009 /
  0.069 / 0.004 (untrained: 0 modes);
- mnist_mini, the DCGAN recipe (width 32, G's moving average, R1), 10 epochs, measured
  2026-12-01 on seeds 42 / 0 / 1: fd 134 / 91 / 104 (an untrained or 3-epoch G: about 650),
  class entropy 2.21 / 2.19 / 2.21, recall 0.56 / 0.64 / 0.53;
- mnist_mini, VAE, 8 epochs: held-out IWAE (k = 20) -123.5 / -124.2 / -122.8 nats;
- digits edges -> digits, pix2pix of width 16, 1 epoch: PSNR 19.2 / 19.3 dB, label kept
  0.883 / 0.890 by a digit classifier trained for 5 epochs (which reads 0.956 / 0.958 of the
  real digits; seeds 42 / 1).
"""

import pytest

QUIET = ["trainer.enable_progress_bar=false", "logger=none"]


@pytest.fixture
def smoke(run_train):
    def _run(*overrides: str) -> dict[str, float]:
        metrics, _ = run_train([*overrides, *QUIET])
        return metrics

    return _run


def test_wgan_gp_covers_every_mode_of_the_ring(smoke):
    metrics = smoke("experiment=wgan_gp_ring", "trainer.max_epochs=6",
                    "callbacks.sample_quality.every_n_epochs=6")  # fmt: skip
    assert metrics["eval/modes"] == 8
    assert metrics["eval/hq"] >= 0.3 and metrics["eval/reverse_kl"] <= 0.15


def test_dcgan_draws_digits_of_every_class(smoke):
    metrics = smoke(
        "experiment=dcgan_mnist_mini", "trainer.max_epochs=10",
        "callbacks.sample_quality.every_n_epochs=10",
    )  # fmt: skip
    assert metrics["eval/fd"] < 200
    assert metrics["eval/class_entropy"] > 2.0 and metrics["eval/recall"] > 0.3


def test_vae_bound_on_held_out_digits(smoke):
    metrics = smoke("experiment=vae_mnist_mini", "trainer.max_epochs=8", "model.iwae_k=20",
                    "callbacks.sample_quality.every_n_epochs=8")  # fmt: skip
    assert metrics["eval/iwae"] > -130
    # the importance-weighted bound tightens with k, from the ELBO up
    assert metrics["eval/elbo"] < metrics["eval/iwae_k10"] < metrics["eval/iwae_k20"]


def test_pix2pix_draws_the_digit_behind_its_edges(smoke):
    metrics = smoke(
        "experiment=pix2pix_digits_edges", "model.generator.width=16",
        "model.discriminator.width=16", "trainer.max_epochs=1",
        "callbacks.sample_quality.classifier_epochs=5",
    )  # fmt: skip
    assert metrics["eval/psnr"] > 18 and metrics["eval/label_kept"] > 0.8
