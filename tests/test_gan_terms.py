"""The GAN family: each variant's term alone on hand-worked cases, the discriminator's one
output type, how the GAN sums its terms, G's moving average and DiffAugment."""

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import ConfigError
from genlab.losses import NonSaturatingLoss, WassersteinLoss
from genlab.models.gan import GAN
from genlab.models.gan_terms import (
    AuxiliaryClassifier,
    DiscriminatorStep,
    GeneratorStep,
    GradientPenalty,
    MismatchedLabels,
    ModeSeeking,
    R1Penalty,
    TwinClassifier,
    WeightClipping,
    mode_seeking_ratio,
)
from genlab.nets import DiscriminatorOutput, discriminator, generator
from genlab.nets.mlp import MLPDiscriminator, MLPGenerator

from helpers import OpsSeen

SHAPE = (1, 8, 8)
LABELS = torch.tensor([0, 1, 2, 0, 1, 2])


def small_gan(**settings) -> GAN:
    classes = settings.pop("num_classes", 0)
    d_settings = settings.pop("d", {})
    return GAN(
        generator(4, SHAPE, num_classes=classes, width=4),
        discriminator(SHAPE, width=4, **d_settings),
        settings.pop("loss", NonSaturatingLoss()),
        partial(torch.optim.Adam),
        partial(torch.optim.Adam),
        latent_dim=4,
        num_classes=classes,
        **settings,
    )


def d_step(out_real, out_fake, labels=None, critic=None, loss=None, discriminator=None):
    return DiscriminatorStep(
        real=torch.randn(len(out_real.score), *SHAPE), fake=torch.randn(len(out_fake.score), *SHAPE),
        labels=labels, real_out=out_real, fake_out=out_fake, critic=critic,
        discriminator=discriminator, loss=loss or NonSaturatingLoss(), num_classes=3, logging=True,
    )  # fmt: skip


# --- the discriminator's output --------------------------------------------------------------


def test_every_gan_discriminator_returns_one_named_type():
    """Points or images, with or without class heads: a DiscriminatorOutput, its heads None
    where the net has none."""
    points = discriminator((2,))(torch.randn(5, 2))
    plain = discriminator(SHAPE, width=4)(torch.randn(5, *SHAPE))
    heads = discriminator(SHAPE, aux_classes=3, twin_classes=3, width=4)(torch.randn(5, *SHAPE))
    for out in (points, plain, heads):
        assert isinstance(out, DiscriminatorOutput) and out.score.shape == (5,)
    assert points.class_logits is None and plain.twin_logits is None
    assert heads.class_logits.shape == heads.twin_logits.shape == (5, 3)
    with pytest.raises(ConfigError, match="twin classifier needs the auxiliary one"):
        discriminator(SHAPE, twin_classes=3, width=4)
    with pytest.raises(ConfigError, match="needs image data"):
        discriminator((2,), aux_classes=3)


# --- each term alone -------------------------------------------------------------------------


class LinearCritic(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x, labels=None):
        return DiscriminatorOutput(x.flatten(1) @ self.weight)


@pytest.mark.parametrize(
    "term, name, stat, penalty, share",
    [
        # WGAN-GP: a linear critic with |w| = 3 has the penalty (3 - 1)^2 = 4 everywhere
        (GradientPenalty, "gradient_penalty", "loss/gp", 4.0, 1.0),
        # R1: the same critic has |grad|^2 = 9 on every real sample, and D pays half of it
        (R1Penalty, "r1_penalty", "loss/r1", 9.0, 0.5),
    ],
)
def test_gradient_penalties_add_their_weight_times_the_penalty(term, name, stat, penalty, share):
    critic = LinearCritic(torch.full((64,), 3.0 / 8))
    scores = DiscriminatorOutput(torch.zeros(16))
    extra, stats = term(weight=10.0).discriminator_loss(
        d_step(scores, scores, discriminator=critic)
    )
    assert float(extra) == pytest.approx(10.0 * share * penalty, rel=1e-4)
    assert float(stats[stat]) == pytest.approx(penalty, rel=1e-4)
    assert not term(weight=0.0).active
    with pytest.raises(ConfigError, match=f"{name}.weight must be >= 0"):
        term(weight=-1.0)


def test_weight_clipping_clamps_every_weight_of_d_after_its_update():
    net = nn.Linear(4, 3)
    with torch.no_grad():
        net.weight.mul_(100)
    WeightClipping(clip=0.01).after_discriminator_update(net)
    assert all(p.abs().max() <= 0.01 for p in net.parameters())
    assert not WeightClipping(clip=None).active
    with pytest.raises(ConfigError, match="weight_clipping.clip must be > 0"):
        WeightClipping(clip=0.0)


def test_auxiliary_classifier_names_the_class_of_real_and_fake_samples():
    real_logits, fake_logits = torch.randn(6, 3), torch.randn(6, 3)
    term = AuxiliaryClassifier(weight=2.0, weight_fake=0.5)
    extra, stats = term.discriminator_loss(
        d_step(
            DiscriminatorOutput(torch.zeros(6), real_logits),
            DiscriminatorOutput(torch.zeros(6), fake_logits),
            labels=LABELS,
        )
    )
    real_ce, fake_ce = F.cross_entropy(real_logits, LABELS), F.cross_entropy(fake_logits, LABELS)
    assert torch.allclose(extra, 2.0 * real_ce + 0.5 * fake_ce)
    assert torch.allclose(stats["loss/aux_d"], real_ce + fake_ce)
    accuracy = (real_logits.argmax(1) == LABELS).float().mean()
    assert stats["d/aux_acc"] == accuracy
    # without a class head it says how to get one
    with pytest.raises(ConfigError, match="aux_classes"):
        term.discriminator_loss(d_step(DiscriminatorOutput(torch.zeros(6)),
                                       DiscriminatorOutput(torch.zeros(6)), labels=LABELS))  # fmt: skip
    with pytest.raises(ConfigError, match="needs labels"):
        small_gan(terms={"aux": AuxiliaryClassifier()}, d={"aux_classes": 3})


def test_acgan_generator_term_stops_at_the_confidence_floor():
    """With confidence_g=p, samples that D's classifier names with probability >= p add
    nothing to G's classification term (and no gradient); the others add their
    cross-entropy."""
    labels = torch.tensor([0, 1, 2])
    # sample 0 named with p ~ 0.98, sample 1 with p ~ 0.5, sample 2 wrongly
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, -9.0], [5.0, 0.0, 0.0]])
    logits.requires_grad_(True)
    floor = -math.log(0.9)
    step = GeneratorStep(torch.randn(3, 4), torch.randn(3, *SHAPE), labels,
                         DiscriminatorOutput(torch.zeros(3), logits), logging=False)  # fmt: skip
    extra, stats = AuxiliaryClassifier(weight=1.0, weight_g=3.0, confidence_g=0.9).generator_loss(
        step
    )
    ce = F.cross_entropy(logits, labels, reduction="none")
    assert ce[0] < floor < ce[1] < ce[2]
    assert torch.allclose(stats["loss/aux_g"], (floor + ce[1] + ce[2]) / 3)
    assert torch.allclose(extra, 3.0 * (floor + ce[1] + ce[2]) / 3)
    extra.backward()
    assert torch.all(logits.grad[0] == 0) and logits.grad[1:].abs().sum() > 0
    plain, _ = AuxiliaryClassifier(weight=1.0).generator_loss(step)  # no floor: plain CE
    assert torch.allclose(plain, ce.mean())


def test_twin_classifier_learns_gs_classes_and_g_subtracts_it():
    """TAC-GAN: D's twin head learns the asked-for class on generated samples; G's term is
    minus the twin's cross-entropy, so a sample the twin recognises costs G."""
    twin = torch.randn(6, 3)
    out = DiscriminatorOutput(torch.zeros(6), torch.randn(6, 3), twin)
    term = TwinClassifier(weight=2.0, weight_g=0.5)
    extra, stats = term.discriminator_loss(d_step(out, out, labels=LABELS))
    ce = F.cross_entropy(twin, LABELS)
    assert torch.allclose(extra, 2.0 * ce) and torch.allclose(stats["loss/twin_d"], ce)
    step = GeneratorStep(torch.randn(6, 4), torch.randn(6, *SHAPE), LABELS, out, logging=False)
    extra, _ = term.generator_loss(step)
    assert torch.allclose(extra, -0.5 * ce)
    with pytest.raises(ConfigError, match="beside ACGAN's"):
        small_gan(num_classes=3, terms={"twin": TwinClassifier()},
                  d={"aux_classes": 3, "twin_classes": 3})  # fmt: skip


@pytest.mark.parametrize("loss", [NonSaturatingLoss(), WassersteinLoss()], ids=["bce", "wgan"])
def test_mismatched_labels_make_d_see_wrong_pairs_as_negatives(loss):
    """GAN-CLS with weight 1/2: D's loss becomes real + (fake + mismatched) / 2, the wrong
    labels never the right ones."""
    real_scores, fake_scores = torch.randn(6), torch.randn(6)
    seen = []

    def critic(x, labels):
        seen.append(labels)
        return DiscriminatorOutput(x.flatten(1).sum(1))

    step = d_step(DiscriminatorOutput(real_scores), DiscriminatorOutput(fake_scores),
                  labels=LABELS, critic=critic, loss=loss)  # fmt: skip
    extra, stats = MismatchedLabels(weight=0.5).discriminator_loss(step)
    wrong_scores = step.real.flatten(1).sum(1)
    assert torch.all(seen[0] != LABELS) and seen[0].max() < 3
    total = loss.discriminator(real_scores, fake_scores) + extra
    paper = (
        loss.discriminator(real_scores, fake_scores)
        - loss.fake_loss(fake_scores)
        + 0.5 * (loss.fake_loss(fake_scores) + loss.fake_loss(wrong_scores))
    )
    assert torch.allclose(total, paper, atol=1e-6)
    assert torch.allclose(stats["loss/mismatched_d"], loss.fake_loss(wrong_scores))
    with pytest.raises(ConfigError, match="at least 2 classes"):
        small_gan(terms={"cls": MismatchedLabels()})


def test_mode_seeking_pairs_same_class_samples_and_charges_ignored_noise():
    """MSGAN: the ratio |G(z1) - G(z2)| / |z1 - z2| is 0 for a G that ignores z, and G draws
    its batch so that sample i and sample i + n/2 share a class."""
    z = torch.randn(8, 4)
    assert mode_seeking_ratio(z, torch.ones(8, 1, 2, 2)) == 0
    images = torch.cat([z, z], dim=1).view(8, 2, 2, 2)  # |G(z1) - G(z2)| = |z1 - z2|
    assert torch.allclose(mode_seeking_ratio(z, images), torch.tensor(1.0))
    term = ModeSeeking(weight=2.0)
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 1])
    drawn = term.generator_labels(labels)
    assert drawn.tolist() == [0, 1, 2, 0, 1, 2, 1]
    step = GeneratorStep(z, images, None, DiscriminatorOutput(torch.zeros(8)), logging=False)
    extra, stats = term.generator_loss(step)
    assert torch.allclose(extra, torch.tensor(2.0 / (1.0 + 1e-5)))
    assert torch.allclose(stats["g/diversity"], torch.tensor(1.0))


# --- the GAN sums its terms --------------------------------------------------------------------


def test_terms_that_are_off_are_left_out_and_the_step_adds_the_rest():
    gan = small_gan(terms={"gp": GradientPenalty(weight=0.0), "clip": WeightClipping(None)})
    assert gan.terms == []
    torch.manual_seed(0)
    gan = small_gan(
        loss=WassersteinLoss(), d={"norm": "layer"},
        terms={"gp": GradientPenalty(weight=10.0), "clip": WeightClipping(clip=0.05)},
    )  # fmt: skip
    updates = []
    gan.toggled_optimizer = lambda optimizer: torch.enable_grad()
    gan.optimize = lambda loss, optimizer, clip=None: updates.append(loss.detach())
    real = torch.rand(4, *SHAPE) * 2 - 1
    stats, (real_scores, fake_scores) = gan.discriminator_step(real, None, None)
    assert set(stats) == {"loss/d", "loss/gp"}
    # the loss D was updated with: Wasserstein's plus 10 x the penalty
    assert torch.allclose(updates[0], stats["loss/d"] + 10 * stats["loss/gp"])
    assert torch.allclose(stats["loss/d"], fake_scores.mean() - real_scores.mean())
    # and the clipping ran after the update
    assert all(p.abs().max() <= 0.05 for p in gan.discriminator.parameters())


def test_generator_moving_average_ramps_up_then_follows_slowly():
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


# --- DiffAugment -------------------------------------------------------------------------------


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
    seen = []
    gan = small_gan(augment=["translation"], d={"dropout": 0.25})
    assert any(isinstance(m, torch.nn.Dropout2d) for m in gan.discriminator.modules())
    gan.discriminator.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    x = torch.rand(16, *SHAPE) * 2 - 1
    gan.critic(x, None)
    assert seen[-1].shape == x.shape and not torch.equal(seen[-1], x)
    gan.augment = None
    gan.critic(x, None)
    assert torch.equal(seen[-1], x)
