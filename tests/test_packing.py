"""PacGAN's packing: what D sees, one score per pack, the gradient penalty per pack, the
maxout discriminator, and the one-line refusals."""

from functools import partial

import pytest
import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.losses import NonSaturatingLoss, gradient_penalty
from genlab.models.gan import GAN
from genlab.nets import discriminator, generator
from genlab.nets.mlp import Maxout, MLPDiscriminator
from genlab.nets.packing import PackedDiscriminator, pack, packed_shape

from helpers import cli_in_process, one_line_error


def test_pack_joins_consecutive_samples_along_channels():
    x = torch.arange(6 * 2 * 3 * 3, dtype=torch.float32).view(6, 2, 3, 3)
    packed = pack(x, 3)
    assert packed.shape == (2, 6, 3, 3)
    for p in range(2):
        for i in range(3):
            assert torch.equal(packed[p, 2 * i : 2 * i + 2], x[3 * p + i])
    points = torch.randn(8, 2)
    assert torch.equal(pack(points, 4)[1], points[4:].flatten())
    assert packed_shape((2,), 4) == (8,) and packed_shape((3, 28, 28), 2) == (6, 28, 28)


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_packed_discriminator_scores_one_value_per_pack(shape):
    d = discriminator(shape, width=4, hidden_dims=[8], pack=4)
    assert isinstance(d, PackedDiscriminator) and d.pack == 4
    assert d(torch.randn(12, *shape)).score.shape == (3,)
    inner_in = d.discriminator.net[0].in_features if len(shape) == 1 else None
    if inner_in is not None:
        assert inner_in == 8  # 4 points of 2 coordinates
    # a sample moved to another pack changes that pack's score only
    x = torch.randn(12, *shape)
    d.eval()
    before = d(x).score
    x[5] += 1.0
    after = d(x).score
    assert torch.equal(before[[0, 2]], after[[0, 2]]) and before[1] != after[1]


def test_gradient_penalty_takes_the_norm_of_the_whole_pack():
    # a linear critic on packs of 2 points: its gradient on a pack is w (norm 1 over the pack),
    # but on each point alone it is half of w (norm 1/sqrt(2))
    w = torch.tensor([0.5, 0.5, 0.5, 0.5])

    def critic(x):
        return pack(x, 2) @ w

    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    assert gradient_penalty(critic, real, fake, group=2).item() == pytest.approx(0.0, abs=1e-12)
    per_point = (2**-0.5 - 1) ** 2
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(per_point, rel=1e-6)


def test_gradient_penalty_interpolates_a_pack_with_one_weight():
    seen = []

    def critic(x):
        seen.append(x.detach())
        return pack(x, 3).sum(1)

    real, fake = torch.ones(6, 2), torch.zeros(6, 2)
    gradient_penalty(critic, real, fake, group=3)
    alphas = seen[0][:, 0]  # interpolate = alpha * 1 + (1 - alpha) * 0
    assert torch.equal(alphas[:3], alphas[:1].expand(3)) and torch.equal(
        alphas[3:], alphas[3:4].expand(3)
    )
    assert alphas[0] != alphas[3]


def test_maxout_takes_the_largest_piece():
    x = torch.tensor([[1.0, -2.0, 3.0, 0.5, 4.0, -1.0]])
    assert torch.equal(Maxout(3)(x), torch.tensor([[3.0, 4.0]]))
    d = MLPDiscriminator((2,), hidden_dims=[200, 200, 200], maxout=5)
    linears = [m for m in d.net if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [1000, 1000, 1000, 1]
    assert [m.in_features for m in linears] == [2, 200, 200, 200]


def test_init_std_draws_linear_weights_from_a_normal():
    torch.manual_seed(0)
    g = generator(2, (2,), hidden_dims=[400, 400], init_std=0.02)
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.Linear)])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(not m.bias.any() for m in g.modules() if isinstance(m, nn.Linear))


def packed_gan(shape=(1, 8, 8), pack_=2, **d_settings) -> GAN:
    return GAN(
        generator(4, shape, width=4, hidden_dims=[8]),
        discriminator(shape, width=4, hidden_dims=[8], pack=pack_, **d_settings),
        NonSaturatingLoss(),
        partial(torch.optim.Adam),
        partial(torch.optim.Adam),
        latent_dim=4,
        pack=pack_,
    )


def test_packed_wgan_gp_step_updates_both_players():
    from genlab.models.gan_terms import GradientPenalty

    torch.manual_seed(0)
    gan = packed_gan(norm="layer")
    gan.terms = [GradientPenalty(10.0)]
    before = [p.detach().clone() for p in gan.parameters()]
    gan.toggled_optimizer = lambda optimizer: torch.enable_grad()
    gan.optimize = lambda loss, opt, clip=None: (opt.zero_grad(), loss.backward(), opt.step())
    opt_g = torch.optim.Adam(gan.generator.parameters(), lr=1e-2)
    opt_d = torch.optim.Adam(gan.discriminator.parameters(), lr=1e-2)
    stats, (real_scores, fake_scores) = gan.discriminator_step(torch.randn(8, 1, 8, 8), None, opt_d)
    assert real_scores.shape == fake_scores.shape == (4,) and stats["loss/gp"] > 0
    gan.generator_step(8, None, opt_g)
    assert all(not torch.equal(a, b) for a, b in zip(before, gan.parameters(), strict=True))


def test_pack_must_match_the_discriminator():
    with pytest.raises(ConfigError, match="model.discriminator.pack"):
        GAN(
            generator(4, (2,), hidden_dims=[8]),
            discriminator((2,), hidden_dims=[8]),
            NonSaturatingLoss(),
            partial(torch.optim.Adam),
            partial(torch.optim.Adam),
            latent_dim=4,
            pack=2,
        )


def test_conditional_packing_is_refused():
    with pytest.raises(ConfigError, match="packs unconditional samples"):
        discriminator((2,), num_classes=8, pack=2)
    with pytest.raises(ConfigError, match="model.pack must be >= 1"):
        discriminator((2,), pack=0)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["data.batch_size=100", "model.pack=3"],
            "data.batch_size=100 is not a multiple of model.pack=3",
        ),
        (["model.pack=2", "model.num_classes=${data.num_classes}"], "packs unconditional samples"),
        (["model.discriminator.maxout=-1"], "model.discriminator.maxout must be >= 0"),
    ],
)
def test_bad_packing_settings_stop_with_one_line(tmp_path, overrides, expected):
    result = cli_in_process(
        "genlab-train", "model=gan", "data=ring", "trainer.max_epochs=1", "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}", *overrides, cwd=tmp_path,
    )  # fmt: skip
    assert expected in one_line_error(result)


def test_a_packed_run_trains_and_scores_the_modes(run_train):
    metrics, _ = run_train(
        ["model=gan", "data=ring", "model.pack=4", "data.batch_size=400", "data.num_train=4000",
         "trainer.max_epochs=1", "logger=none", "model.discriminator.maxout=5",
         "model.discriminator.hidden_dims=[16,16]", "model.terms.gradient_penalty.weight=1"]
    )  # fmt: skip
    assert {"eval/modes", "eval/hq", "eval/reverse_kl"} <= set(metrics)
