"""Losses, metrics and the batch loader against values worked out by hand."""

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab.data.loaders import InMemoryBatchLoader
from genlab.data.toy2d import GridDataModule, RingDataModule
from genlab.errors import ConfigError
from genlab.losses import (
    HingeLoss,
    LeastSquaresLoss,
    NonSaturatingLoss,
    WassersteinLoss,
    gradient_penalty,
)
from genlab.metrics import frechet_distance, mode_coverage, prdc

from conftest import OpsSeen


def test_losses_at_known_scores():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
    bce = NonSaturatingLoss()
    expected_d = -(torch.sigmoid(real).log().mean() + (1 - torch.sigmoid(fake)).log().mean())
    assert bce.discriminator(real, fake) == pytest.approx(float(expected_d), rel=1e-5)
    assert bce.generator(fake) == pytest.approx(float(-torch.sigmoid(fake).log().mean()), rel=1e-5)
    assert LeastSquaresLoss().discriminator(real, fake) == pytest.approx(
        0.5 * ((1 + 1) / 2 + (1 + 1) / 2)
    )
    assert LeastSquaresLoss().generator(fake) == pytest.approx(0.5 * (4 + 0) / 2)
    assert WassersteinLoss().discriminator(real, fake) == pytest.approx(0.0 - 1.0)
    assert WassersteinLoss().generator(fake) == pytest.approx(0.0)
    assert HingeLoss().discriminator(real, fake) == pytest.approx((0 + 1) / 2 + (0 + 2) / 2)


class LinearCritic(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x, labels=None):
        return x @ self.weight


@pytest.mark.parametrize("norm, expected", [(1.0, 0.0), (3.0, 4.0)])
def test_gradient_penalty_of_linear_critic(norm, expected):
    # A linear critic has gradient w everywhere, so the penalty is (||w|| - 1)^2.
    critic = LinearCritic(torch.tensor([0.6, 0.8]) * norm)
    real, fake = torch.randn(64, 2), torch.randn(64, 2)
    assert float(gradient_penalty(critic, real, fake)) == pytest.approx(expected, abs=1e-5)


def test_mode_coverage_perfect_and_collapsed():
    ring = RingDataModule(num_train=16, num_val=8)
    centers = ring.centers
    perfect = centers.repeat(100, 1) + 0.01 * torch.randn(800, 2)
    scores = mode_coverage(perfect, centers, std=0.02)
    assert scores["modes"] == 8 and scores["hq"] == 1.0
    assert scores["reverse_kl"] == pytest.approx(0.0, abs=1e-9)

    collapsed = centers[:1].repeat(500, 1)
    scores = mode_coverage(torch.cat([collapsed, torch.full((500, 2), 10.0)]), centers, std=0.02)
    assert scores["modes"] == 1 and scores["hq"] == 0.5
    assert scores["reverse_kl"] == pytest.approx(math.log(8))


def test_grid_matches_the_papers():
    grid = GridDataModule(num_train=16, num_val=8)
    assert len(grid.centers) == 25
    assert sorted(set(grid.centers[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_frechet_distance_of_a_shift():
    real = torch.randn(5000, 3, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    shifted = real + torch.tensor([1.0, 2.0, 0.0])
    assert frechet_distance(real, shifted) == pytest.approx(5.0, rel=1e-3)


def test_prdc_separates_good_from_bad_samples():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(1000, 2, generator=generator)
    good = torch.randn(1000, 2, generator=generator)
    half = torch.randn(1000, 2, generator=generator).abs()  # only one quadrant of the real support
    far = torch.randn(1000, 2, generator=generator) + 20
    assert prdc(real, good)["precision"] > 0.9 and prdc(real, good)["recall"] > 0.9
    assert prdc(real, half)["recall"] < 0.6
    assert prdc(real, far)["precision"] == 0.0 and prdc(real, far)["coverage"] == 0.0


def collect(loader: InMemoryBatchLoader, epoch: int) -> torch.Tensor:
    loader.set_epoch(epoch)
    return torch.cat([batch[0] for batch in loader])


def test_loader_yields_every_sample_once_in_a_new_order_each_epoch():
    data = torch.arange(100)
    loader = InMemoryBatchLoader((data,), batch_size=10, seed=3)
    first, second = collect(loader, 0), collect(loader, 1)
    assert sorted(first.tolist()) == list(range(100)) == sorted(second.tolist())
    assert not torch.equal(first, second)
    again = InMemoryBatchLoader((data,), batch_size=10, seed=3)
    assert torch.equal(collect(again, 1), second)
    assert loader.sampler is loader and len(loader) == 10


def test_loader_shards_disjointly_across_ranks():
    data = torch.arange(103)
    shards = [
        collect(InMemoryBatchLoader((data,), batch_size=5, seed=1, rank=r, world_size=2), 4)
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 50
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_loader_rejects_a_batch_larger_than_the_data():
    with pytest.raises(ValueError, match="smaller data.batch_size"):
        InMemoryBatchLoader((torch.arange(10),), batch_size=11)


def test_generator_moving_average_ramps_up_then_follows_slowly():
    from functools import partial

    from genlab.losses import NonSaturatingLoss
    from genlab.models.gan import GAN
    from genlab.nets.mlp import MLPDiscriminator, MLPGenerator

    torch.manual_seed(0)
    gan = GAN(
        MLPGenerator(2, (2,), [8]), MLPDiscriminator((2,), [8]), NonSaturatingLoss(),
        partial(torch.optim.Adam), partial(torch.optim.Adam), latent_dim=2, ema_decay=0.9,
    )  # fmt: skip
    weight = next(gan.generator.parameters())
    average = next(gan.generator_ema.parameters())
    start = average.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    gan.update_ema()  # first update: decay (1 + 1) / (10 + 1) = 0.18, far below 0.9
    assert torch.allclose(average, start + (1 - 2 / 11))
    with OpsSeen() as seen:  # the device never has to hand the count back to Python
        for _ in range(100):
            gan.update_ema()
    assert seen.reads == 0 and seen.ops
    assert torch.allclose(average, weight, atol=1e-3)
    assert not average.requires_grad
    assert any(key.startswith("generator_ema.") for key in gan.state_dict())  # checkpointed


def test_tacgan_generator_loss_subtracts_the_twin_classifier():
    """G's classification term is CE(classifier) - CE(twin): a sample the twin recognises
    as its class costs G, so pleasing the classifier alone is not enough."""
    from functools import partial

    from genlab.losses import NonSaturatingLoss
    from genlab.models.gan import GAN
    from genlab.nets import discriminator, generator

    torch.manual_seed(0)
    shape = (1, 8, 8)
    d = discriminator(shape, aux_classes=3, twin_classes=3, width=4)
    score, logits, twin = d(torch.randn(5, *shape))
    assert score.shape == (5,) and logits.shape == twin.shape == (5, 3)
    gan = GAN(
        generator(4, shape, num_classes=3, width=4), d, NonSaturatingLoss(),
        partial(torch.optim.Adam), partial(torch.optim.Adam), latent_dim=4, num_classes=3,
        aux_weight=1.0,
    )  # fmt: skip
    x, labels = torch.randn(6, *shape), torch.tensor([0, 1, 2, 0, 1, 2])
    scores, logits, twin = gan.critic(x, labels)
    expected = F.cross_entropy(logits, labels) - F.cross_entropy(twin, labels)
    assert torch.allclose(gan.generator_classification(logits, twin, labels), expected)
    plain = gan.generator_classification(logits, None, labels)  # ACGAN
    assert torch.allclose(plain, F.cross_entropy(logits, labels))
    with pytest.raises(ConfigError, match="twin classifier needs the auxiliary one"):
        discriminator(shape, twin_classes=3, width=4)


def test_acgan_classification_term_stops_at_the_confidence_floor():
    """With model.aux_confidence_g=p, samples that D's classifier names with probability
    >= p add nothing to G's classification term (and no gradient); the others add their
    cross-entropy."""
    from genlab.models.gan import GAN

    labels = torch.tensor([0, 1, 2])
    # sample 0 named with p ~ 0.98, sample 1 with p ~ 0.5, sample 2 wrongly
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, -9.0], [5.0, 0.0, 0.0]])
    logits.requires_grad_(True)
    floor = -math.log(0.9)
    term = GAN.generator_classification(logits, None, labels, floor)
    ce = F.cross_entropy(logits, labels, reduction="none")
    assert ce[0] < floor < ce[1] < ce[2]
    assert torch.allclose(term, (floor + ce[1] + ce[2]) / 3)
    term.backward()
    assert torch.all(logits.grad[0] == 0) and logits.grad[1:].abs().sum() > 0
    # no floor: plain cross-entropy
    assert torch.allclose(GAN.generator_classification(logits, None, labels), ce.mean())


def test_diff_augment_transforms_keep_shape_and_pass_gradients():
    from genlab.nets.augment import DiffAugment, random_cutout, random_translation

    torch.manual_seed(0)
    x = torch.rand(64, 3, 16, 16) * 2 - 1
    # translation: each image is its own shift of the original, the border filled with -1
    shifted = random_translation(x, ratio=0.125, fill=-1.0)
    assert shifted.shape == x.shape
    moved = 0
    for original, image in zip(x, shifted, strict=True):
        padded = F.pad(original, (2, 2, 2, 2), value=-1.0)
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[:, dy : dy + 16, dx : dx + 16], image)
        ]
        assert len(matches) == 1
        moved += matches[0] != (2, 2)
    assert moved > 40  # 24 of 25 shifts move the image
    # cutout: a square of fill values, at most 8 x 8, the rest untouched
    cut = random_cutout(x, ratio=0.5, fill=0.0)
    changed = (cut != x).any(dim=1)
    assert changed.flatten(1).sum(1).max() <= 64 and changed.any()
    assert torch.all(cut[(cut != x)] == 0)
    # the whole policy: differentiable, different draws per call, points pass through
    augment = DiffAugment(["color", "translation", "cutout"])
    y = x.clone().requires_grad_(True)
    out = augment(y)
    out.sum().backward()
    assert out.shape == x.shape and y.grad.abs().sum() > 0
    assert not torch.equal(augment(x), augment(x))
    points = torch.randn(10, 2)
    assert augment(points) is points
    with pytest.raises(ConfigError, match="unknown transform"):
        DiffAugment(["rotate"])


def test_gan_discriminator_sees_augmented_images():
    """model.augment puts D's inputs (real and generated) through DiffAugment; G and the
    samples are untouched."""
    from functools import partial

    from genlab.losses import NonSaturatingLoss
    from genlab.models.gan import GAN
    from genlab.nets import discriminator, generator

    shape = (1, 8, 8)
    seen = []
    d = discriminator(shape, width=4, dropout=0.25)
    assert any(isinstance(m, torch.nn.Dropout2d) for m in d.modules())
    d.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    gan = GAN(
        generator(4, shape, width=4), d, NonSaturatingLoss(), partial(torch.optim.Adam),
        partial(torch.optim.Adam), latent_dim=4, augment=["translation"],
    )  # fmt: skip
    x = torch.rand(16, *shape) * 2 - 1
    gan.critic(x, None)
    assert seen[-1].shape == x.shape and not torch.equal(seen[-1], x)
    gan.augment = None
    gan.critic(x, None)
    assert torch.equal(seen[-1], x)


def test_batches_already_on_the_device_are_not_walked_again():
    data = RingDataModule(batch_size=4)
    batch = (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    assert data.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    # anything else goes through Lightning's own transfer
    nested = {"x": torch.zeros(2)}
    moved = data.transfer_batch_to_device(nested, torch.device("cpu"), 0)
    assert moved is not nested and torch.equal(moved["x"], nested["x"])


def test_mode_seeking_term_pairs_same_class_samples_and_charges_ignored_noise():
    """MSGAN: the ratio |G(z1) - G(z2)| / |z1 - z2| is 0 for a G that ignores z, and G's
    step draws its batch so that sample i and sample i + n/2 share a class."""
    from functools import partial

    from genlab.losses import NonSaturatingLoss
    from genlab.models.gan import GAN, mode_seeking_ratio
    from genlab.nets import discriminator, generator

    z = torch.randn(8, 4)
    assert mode_seeking_ratio(z, torch.ones(8, 1, 2, 2)) == 0
    images = torch.cat([z, z], dim=1).view(8, 2, 2, 2)  # |G(z1) - G(z2)| = |z1 - z2|
    assert torch.allclose(mode_seeking_ratio(z, images), torch.tensor(1.0))

    shape = (1, 8, 8)
    g = generator(4, shape, num_classes=3, width=4)
    seen = []
    g.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    gan = GAN(
        g, discriminator(shape, aux_classes=3, width=4), NonSaturatingLoss(),
        partial(torch.optim.Adam), partial(torch.optim.Adam), latent_dim=4, num_classes=3,
        aux_weight=1.0, mode_seeking_weight=1.0,
    )  # fmt: skip
    gan.toggled_optimizer = lambda optimizer: contextlib.nullcontext()
    gan.optimize = lambda loss, optimizer, clip=None: loss.backward()
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 1])
    stats = gan.generator_step(7, labels, None)
    drawn = seen[-1]
    assert torch.equal(drawn[:3], labels[:3]) and torch.equal(drawn[3:6], labels[:3])
    assert drawn[6] == labels[6]
    assert stats["g/diversity"] > 0
    with pytest.raises(ConfigError, match="mode_seeking_weight must be >= 0"):
        GAN(
            g, discriminator(shape, width=4), NonSaturatingLoss(), partial(torch.optim.Adam),
            partial(torch.optim.Adam), latent_dim=4, mode_seeking_weight=-1,
        )  # fmt: skip


def test_grey_pictures_are_stored_with_one_channel():
    """A grid of one-channel images (three equal channels) is written as a grey PNG, the
    same pixels; a picture with colour stays RGB; TensorBoard is told which."""
    import io

    import numpy as np
    from PIL import Image

    from genlab.plotting import encode_png, png_channels

    grey = np.repeat(np.arange(48, dtype=np.uint8).reshape(4, 12, 1), 3, axis=2)
    png = encode_png(grey)
    assert png_channels(png) == 1
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), grey[..., 0])
    colour = grey.copy()
    colour[0, 0, 1] = 200
    png = encode_png(colour)
    assert png_channels(png) == 3
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), colour)


def test_scatter_reuses_its_background_while_the_view_holds():
    """The per-epoch scatter draws axes, real points and modes once; a new picture redraws
    them only when the generated points leave the view, which then grows to hold them."""
    import numpy as np

    from genlab import plotting

    torch.manual_seed(0)
    real, centers = torch.randn(500, 2), torch.randn(8, 2)
    first = plotting.scatter_figure(torch.randn(500, 2) * 0.5, real, centers, title="epoch 0")
    background = plotting.SCATTER.background
    second = plotting.scatter_figure(torch.randn(500, 2) * 0.5, real, centers, title="epoch 1")
    assert plotting.SCATTER.background is background  # reused
    assert first.shape == second.shape == (500, 500, 3) and not np.array_equal(first, second)
    # the legend's kept pixels lie over the points (upper right, where these points crowd):
    # an opaque box, the same whatever is under it
    corner = torch.rand(500, 2) * torch.tensor([1.6, 1.0]) + torch.tensor([1.5, 2.9])
    third = plotting.scatter_figure(corner, real, centers, title="epoch 1")
    assert plotting.SCATTER.background is background
    box = plotting.SCATTER.legend.get_window_extent()
    rows = slice(500 - int(box.y1) + 1, 500 - int(box.y0) - 1)
    columns = slice(int(box.x0) + 2, int(box.x1) - 1)
    assert np.array_equal(third[rows, columns], second[rows, columns])
    changed = np.any(third != second, axis=2)
    assert changed[rows, int(box.x0) - 40 : int(box.x0)].sum() > 50  # points beside the box
    # points far outside: a new view that holds them, in whole quarter steps
    low, high = plotting.view_limits(real.numpy(), real.numpy())
    real_low, real_high = np.percentile(real.numpy(), [0.5, 99.5], axis=0)
    span = float((real_high - real_low).max()) + 1e-3
    assert np.allclose(low, real_low - 0.15 * span) and np.allclose(high, real_high + 0.15 * span)
    far = real.numpy() * 4
    grown_low, grown_high = plotting.view_limits(far, real.numpy())
    far_low, far_high = np.percentile(far, [0.5, 99.5], axis=0)
    assert np.all(grown_low <= far_low) and np.all(grown_high >= far_high)
    steps = np.concatenate([(low - grown_low), (grown_high - high)]) / (0.25 * span)
    assert np.allclose(steps, steps.round()) and np.all(steps >= 1)
    axes = plotting.SCATTER.figure.axes[0]
    plotting.scatter_figure(torch.from_numpy(far), real, centers, title="diverged")
    assert plotting.SCATTER.background is not background
    # the same axes (their ticks reused), showing the grown view
    assert plotting.SCATTER.figure.axes == [axes]
    assert np.allclose([axes.get_xlim()[0], axes.get_ylim()[0]], grown_low)
    assert np.allclose([axes.get_xlim()[1], axes.get_ylim()[1]], grown_high)
    # diverged to non-finite values: still a picture
    nan = torch.full((10, 2), float("nan"))
    assert plotting.scatter_figure(nan, real, centers).shape == (500, 500, 3)
    assert plotting.scatter_figure(nan).shape == (500, 500, 3)  # and no real points either
    assert plotting.SCATTER.figure.axes[0] is not axes  # another scene: new axes


def test_toggled_optimizer_freezes_what_lightnings_does_and_restores_it(tmp_path):
    """genlab's cheaper toggle leaves every parameter's requires_grad as Lightning's would,
    inside the block and after it (a layer the user froze stays frozen), also on errors."""
    from types import SimpleNamespace

    import lightning as L

    from genlab.train import compose_run, instantiate_model

    model = instantiate_model(compose_run(["model=wgan_gp", "data=ring"], tmp_path).model)[0]
    opt_g = torch.optim.Adam(model.generator.parameters())
    opt_d = torch.optim.Adam(model.discriminator.parameters())
    next(model.generator.parameters()).requires_grad_(False)  # a layer frozen by the user
    model._trainer = SimpleNamespace(optimizers=[opt_g, opt_d])

    def states() -> list[bool]:
        return [p.requires_grad for p in model.parameters()]

    before = states()
    for opt in (opt_g, opt_d):
        with L.LightningModule.toggled_optimizer(model, opt):
            expected = states()
        assert states() == before
        with model.toggled_optimizer(opt):
            assert states() == expected
        assert states() == before
    with model.toggled_optimizer(opt_g):
        assert not any(p.requires_grad for p in model.discriminator.parameters())
    with contextlib.suppress(ValueError), model.toggled_optimizer(opt_d):
        assert not any(p.requires_grad for p in model.generator.parameters())
        raise ValueError
    assert states() == before
