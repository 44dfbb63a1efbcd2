"""The likelihood models: AE, VAE, CVAE, beta-VAE and PixelCNN."""

import json
import math
from functools import partial

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.distributions import Normal, kl_divergence

from genlab.errors import DataError, GenlabError
from genlab.losses import gaussian_kl
from genlab.models.pixelcnn import PixelCNN
from genlab.models.vae import VAE
from genlab.nets import decoder, encoder
from genlab.nets.pixelcnn import MaskedConv2d, PixelCNNNet

from helpers import tb_run

TINY_DIGITS = ["data=digits", "data.image_size=8", "data.binarize=true"]


def make_vae(shape=(1, 8, 8), latent_dim=4, num_classes=0, net="mlp", **kwargs) -> VAE:
    torch.manual_seed(0)
    return VAE(
        encoder=partial(encoder, shape, num_classes=num_classes, kind=net, hidden_dims=[32]),
        decoder=decoder(latent_dim, shape, num_classes=num_classes, kind=net, hidden_dims=[32]),
        optimizer=partial(torch.optim.Adam),
        latent_dim=latent_dim,
        num_classes=num_classes,
        **kwargs,
    )


def binary_images(n: int, shape=(1, 8, 8), seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand((n, *shape), generator=generator) > 0.7, 1.0, -1.0)


def test_gaussian_kl_matches_the_closed_form():
    mu = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])
    # by hand: 0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)
    expected_first = 0.5 * (1 + 1 - 1 - 0) + 0.5 * (4 + 4 - 1 - math.log(4.0))
    kl = gaussian_kl(mu, logvar)
    assert kl[0].item() == pytest.approx(expected_first, rel=1e-6)
    assert kl[1].item() == 0.0
    reference = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl, reference)


def test_iwae_bound_is_above_the_elbo_and_tightens_with_k():
    vae = make_vae()
    x = binary_images(64)
    bounds = vae.log_px_bounds(x, None, [1, 10, 100], torch.Generator().manual_seed(0))
    means = {k: v.mean().item() for k, v in bounds.items()}
    assert means[1] < means[10] < means[100], means
    assert all(torch.isfinite(v).all() for v in bounds.values())


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_iwae_scores_each_draw_against_its_own_image(likelihood, net):
    """The IWAE bound scores k x N decoded draws against the N images by broadcasting: the
    same log weights as decoding and scoring each draw's batch on its own."""
    shape = (1, 28, 28) if net == "conv" else (1, 8, 8)
    vae = make_vae(shape=shape, net=net, likelihood=likelihood).eval()  # as held_out_metrics
    x = binary_images(6, shape)
    k = 7
    bounds = vae.log_px_bounds(x, None, [1, k], torch.Generator().manual_seed(3))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(3)
        mu, logvar = vae.encode(x, None)
        std = (0.5 * logvar).exp()
        z = mu + std * torch.randn((k, *mu.shape), generator=generator)
        log_w = torch.stack(
            [
                -vae.decode_nll(vae.decoder(z[i], None), x)
                + Normal(0.0, 1.0).log_prob(z[i]).sum(-1)
                - Normal(mu, std).log_prob(z[i]).sum(-1)
                for i in range(k)
            ]
        )
    assert torch.allclose(bounds[1], log_w[0], rtol=1e-5)
    assert torch.allclose(bounds[k], torch.logsumexp(log_w, 0) - math.log(k), rtol=1e-5)


@pytest.mark.parametrize("likelihood", ["bernoulli", "bce", "gaussian"])
def test_the_encoder_reads_the_pixels_the_likelihood_models(likelihood):
    """Bernoulli and BCE decoders model pixels in [0, 1] and the encoder reads them so (off
    pixels 0, not -1: that cost the recipe's MLP VAE 1.4 nats); the Gaussian one models
    [-1, 1] as stored."""
    vae = make_vae(likelihood=likelihood)
    seen = []
    vae.encoder.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    x = binary_images(4)
    vae.terms(x, None)
    assert torch.equal(seen[0], x if likelihood == "gaussian" else (x + 1) / 2)


def test_vae_held_out_metrics_are_consistent():
    vae = make_vae(iwae_k=20)
    x = binary_images(50)
    metrics = vae.held_out_metrics(x, None)
    assert set(metrics) >= {"rec", "kl", "elbo", "iwae", "iwae_k1", "iwae_k10", "nll", "bpd"}
    assert metrics["iwae"] >= metrics["elbo"]
    assert metrics["nll"] == -metrics["iwae"]
    assert metrics["bpd"] == pytest.approx(metrics["nll"] / (64 * math.log(2)))
    assert metrics["kl"] >= 0
    # the same seed gives the same numbers
    assert vae.held_out_metrics(x, None) == metrics


def test_the_elbo_gap_closes_for_a_decoder_that_ignores_z():
    """When p(x|z) does not depend on z, the optimal q is the prior and log p(x) = ELBO: with
    q = p(z) (mu = 0, logvar = 0) every importance weight equals p(x), so all bounds agree."""
    vae = make_vae()
    with torch.no_grad():
        for module in (vae.encoder, vae.decoder):
            for parameter in module.parameters():
                parameter.zero_()
    x = binary_images(8)
    bounds = vae.log_px_bounds(x, None, [1, 50], torch.Generator().manual_seed(0))
    expected = -64 * math.log(2.0)  # every pixel has probability 1/2
    assert torch.allclose(bounds[1], torch.full((8,), expected))
    assert torch.allclose(bounds[50], bounds[1])


@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_vae_samples_have_the_data_shape_and_range(net):
    shape = (1, 28, 28) if net == "conv" else (1, 8, 8)
    vae = make_vae(shape=shape, net=net, num_classes=10)
    samples = vae.sample(12, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (12, *shape)
    assert samples.min() >= -1 and samples.max() <= 1
    again = vae.sample(12, generator=torch.Generator().manual_seed(1))
    assert torch.equal(samples, again)


def test_autoencoder_has_no_kl_and_samples_from_its_code_statistics():
    ae = make_vae(variational=False)
    x = binary_images(16)
    terms = ae.terms(x, None)
    assert torch.equal(terms["kl"], torch.zeros(16))
    ae.track_codes(torch.full((16, 4), 5.0), momentum=1.0)
    assert torch.allclose(ae.code_mean, torch.full((4,), 5.0))
    assert set(ae.held_out_metrics(x, None)) == {"rec"}


def test_bernoulli_likelihood_refuses_grey_levels():
    vae = make_vae()
    grey = torch.rand(4, 1, 8, 8) * 2 - 1
    with pytest.raises(DataError, match="data.binarize=true"):
        vae.training_step((grey, torch.zeros(4, dtype=torch.long)), 0)


@pytest.mark.parametrize("levels,gated,num_classes", [(2, False, 0), (256, True, 3)])
def test_pixelcnn_is_causal(levels, gated, num_classes):
    """The output at pixel i depends on pixels before i (raster order) and on no others."""
    torch.manual_seed(0)
    net = PixelCNNNet(
        2, levels=levels, hidden=8, num_blocks=3, gated=gated, num_classes=num_classes
    )
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    labels = torch.tensor([1]) if num_classes else None
    height, width = 6, 6
    for i, j in [(0, 0), (2, 3), (5, 5), (3, 0)]:
        out = net(x, labels)
        target = out[0, :, i, j] if levels == 2 else out[0, :, :, i, j]
        (grad,) = torch.autograd.grad(target.sum(), x)
        influence = grad.abs().sum(dim=(0, 1))  # H x W
        order = torch.arange(height * width).view(height, width)
        position = i * width + j
        assert influence[order >= position].sum() == 0, (i, j)
        if position > 0:
            assert influence[order < position].sum() > 0, (i, j)


def test_masks_a_and_b():
    a = MaskedConv2d("A", 1, 1, 3).mask[0, 0]
    b = MaskedConv2d("B", 1, 1, 3).mask[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(GenlabError):
        MaskedConv2d("C", 1, 1, 3)


def make_pixelcnn(levels=2, num_classes=0, shape=(1, 6, 6)) -> PixelCNN:
    torch.manual_seed(0)
    net = PixelCNNNet(shape[0], levels=levels, hidden=8, num_blocks=2, num_classes=num_classes)
    return PixelCNN(net, partial(torch.optim.Adam), shape, num_classes=num_classes)


@pytest.mark.parametrize("levels", [2, 256])
def test_pixelcnn_nll_is_a_normalised_likelihood(levels):
    """Summed over every possible 2x2 binary image, p(x) must be 1; an untrained 256-way
    model gives about log(256) nats per pixel."""
    model = make_pixelcnn(levels=levels, shape=(1, 2, 2))
    if levels == 2:
        bits = torch.tensor([[(v >> k) & 1 for k in range(4)] for v in range(16)]).float()
        images = (bits * 2 - 1).view(16, 1, 2, 2)
        total = model.nll(images, None).neg().exp().sum()
        assert total.item() == pytest.approx(1.0, abs=1e-5)
    else:
        images = torch.rand(10, 1, 2, 2) * 2 - 1
        per_pixel = model.nll(images, None).mean().item() / 4
        assert abs(per_pixel - math.log(256)) < 0.5


@pytest.mark.parametrize("levels", [2, 256])
def test_pixelcnn_samples_have_the_right_shape_and_values(levels):
    model = make_pixelcnn(levels=levels, num_classes=3)
    samples = model.sample(5, labels=2, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 6, 6)
    assert samples.min() >= -1 and samples.max() <= 1
    if levels == 2:
        assert set(samples.unique().tolist()) <= {-1.0, 1.0}
    else:
        steps = (samples + 1) * 127.5
        assert torch.allclose(steps, steps.round(), atol=1e-4)
    again = model.sample(5, labels=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)


def test_pixelcnn_held_out_bits_per_dim():
    model = make_pixelcnn()
    x = binary_images(10, shape=(1, 6, 6))
    metrics = model.held_out_metrics(x, None)
    assert metrics["bpd"] == pytest.approx(metrics["nll"] / (36 * math.log(2)))
    assert metrics["nll"] == pytest.approx(model.nll(x, None).mean().item(), rel=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=vae"],
        ["model=cvae"],
        ["model=ae"],
        [
            "model=beta_vae",
            "model.net=conv",
            "data.image_size=28",
            "callbacks.sample_quality.classifier_epochs=1",
        ],  # a classifier for 28-pixel digits
        ["model=vae", "model.likelihood=gaussian", "data.binarize=false"],
        ["model=pixelcnn", "model.net.hidden=8", "model.net.num_blocks=1"],
        [
            "model=pixelcnn",
            "model.num_classes=${data.num_classes}",
            "model.net.levels=256",
            "model.net.gated=true",
            "data.binarize=false",
            "model.net.hidden=8",
            "model.net.num_blocks=1",
        ],
    ],  # fmt: skip
    ids=["vae", "cvae", "ae", "beta_vae_conv", "vae_gaussian", "pixelcnn", "pixelcnn_cond_256"],
)
def test_fast_dev_run(run_train, overrides):
    values, output_dir = run_train(
        [*TINY_DIGITS, *overrides, "debug=fdr", "callbacks.sample_quality.num_samples=100"]
    )
    assert json.loads((output_dir / "metrics.json").read_text())["status"] == "completed"
    assert all(math.isfinite(v) for v in values.values()), values
    assert "eval/fd" in values and "lr" in values
    if "model=pixelcnn" in overrides:
        assert values["eval/bpd"] > 0 and "loss/nll" in values
    elif "model=ae" in overrides:
        assert "eval/rec" in values and "eval/iwae" not in values
    else:
        assert values["eval/iwae"] >= values["eval/elbo"]
        assert {"loss/rec", "loss/kl", "train/elbo", "train/bpd"} <= set(values)
    if "model=cvae" in overrides or "model.num_classes=${data.num_classes}" in overrides:
        assert "eval/cond_acc" in values
    assert (output_dir / "samples" / "last.png").exists()
    if "model=pixelcnn" not in overrides:
        for name in ("reconstructions", "interpolation"):
            assert (output_dir / "samples" / name / "last.png").exists()


def test_vae_run_logs_its_pictures_and_terms(run_train):
    """A 2-D latent adds the manifold and the code scatter; TensorBoard holds every picture
    and the ELBO terms."""
    metrics, output_dir = run_train(
        [*TINY_DIGITS, "model=vae", "model.latent_dim=2", "trainer.max_epochs=3",
         "trainer.log_every_n_steps=1", "callbacks.sample_quality.num_samples=100",
         "callbacks.sample_plots.figures_every_n_epochs=2"]
    )  # fmt: skip
    (event_file,) = tb_run(output_dir).glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert [e.step for e in events.Images("samples/grid")] == [0, 1, 2]  # every epoch
    for name in ("reconstructions", "interpolation", "manifold", "latents"):
        assert f"samples/{name}" in tags["images"], tags["images"]
        # every 2nd epoch, and the last
        assert [e.step for e in events.Images(f"samples/{name}")] == [1, 2]
    for scalar in ("loss/rec", "loss/kl", "train/elbo", "train/bpd", "lr", "eval/iwae"):
        assert scalar in tags["scalars"], tags["scalars"]
    manifold = output_dir / "samples" / "manifold" / "last.png"
    assert manifold.stat().st_size > 1000
    stored = json.loads((output_dir / "metrics.json").read_text())
    assert stored["metrics"]["eval/iwae_k100"] >= stored["metrics"]["eval/iwae_k1"]


def test_bernoulli_on_grey_levels_is_a_one_line_error(run_train):
    with pytest.raises(DataError, match="data.binarize=true"):
        run_train(["data=digits", "data.image_size=8", "model=vae", "debug=fdr"])
