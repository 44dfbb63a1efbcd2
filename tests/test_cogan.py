"""CoGAN: the coupled nets' sharing, the pair metrics, training, sampling, one-line errors."""

from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from genlab import evaluate
from genlab.callbacks.evaluation import SampleQuality
from genlab.contract import PairSampler, Sampler
from genlab.errors import ConfigError, DataError, user_error
from genlab.losses import NonSaturatingLoss
from genlab.models.cogan import CoGAN
from genlab.nets.cogan import CoupledDiscriminators, CoupledGenerators, generator_layers

from helpers import cli_in_process

SHAPE = (1, 32, 32)
# small nets, a few batches: the whole training path in seconds
FAST = [
    "experiment=cogan_digits_inverted",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "model.latent_dim=16",
    "data.batch_size=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "callbacks.sample_quality.num_samples=64",
    "callbacks.sample_quality.classifier_epochs=1",
]


def make_cogan(share_layers: int, shape_b=SHAPE, **kwargs) -> CoGAN:
    return CoGAN(
        generator=CoupledGenerators(16, SHAPE, shape_b, share_layers, width=8),
        discriminator=CoupledDiscriminators(SHAPE, shape_b, share_layers, width=8),
        loss=NonSaturatingLoss(),
        optimizer_g=partial(torch.optim.Adam),
        optimizer_d=partial(torch.optim.Adam),
        latent_dim=16,
        share_layers=share_layers,
        **kwargs,
    )


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- the coupled nets ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("channels", [(1, 1), (1, 3)])
def test_coupled_nets_make_and_score_pairs_of_both_domains(size, channels):
    shape_a, shape_b = (channels[0], size, size), (channels[1], size, size)
    g = CoupledGenerators(16, shape_a, shape_b, shared_layers=2, width=8)
    a, b = g(torch.randn(3, 16))
    assert a.shape == (3, *shape_a) and b.shape == (3, *shape_b)
    assert a.abs().max() <= 1 and b.abs().max() <= 1  # tanh
    d = CoupledDiscriminators(shape_a, shape_b, shared_layers=2, width=8)
    assert d(a, "a").shape == d(b, "b").shape == (3,)


def test_side_by_side_samples_and_the_pairs_behind_them():
    model = make_cogan(3, shape_b=(3, 32, 32))
    assert isinstance(model, PairSampler) and isinstance(model, Sampler)
    pair_a, pair_b = model.sample_pairs(4, generator=torch.Generator().manual_seed(0))
    samples = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 3, 32, 64) == (4, *model.sample_shape())
    assert torch.equal(samples[:, :, :, :32], pair_a.expand(-1, 3, -1, -1))  # A | B
    assert torch.equal(samples[:, :, :, 32:], pair_b)
    with pytest.raises(ConfigError, match="unconditional"):
        model.sample(4, labels=3)


@pytest.mark.parametrize("share", [0, 1, 3])
def test_shared_layers_are_one_module_counted_once(share):
    model = make_cogan(share)
    g, d = model.generator, model.discriminator
    assert g.domain("a")[0] is g.domain("b")[0] is g.shared
    assert len(g.shared) == len(d.shared) == share
    one_generator = generator_layers(16, 1, 32, 8)
    shared_weights = sum(count(layer) for layer in one_generator[:share])
    assert count(g) == 2 * sum(count(layer) for layer in one_generator) - shared_weights
    assert count(g) == count(g.shared) + count(g.own["a"]) + count(g.own["b"])
    # each optimizer holds each weight once
    for optimizer, net in zip(model.configure_optimizers(), (g, d), strict=True):
        held = [p for group in optimizer.param_groups for p in group["params"]]
        assert len({id(p) for p in held}) == len(held) == len(list(net.parameters()))


@pytest.mark.parametrize("share", [0, 3])
def test_an_update_through_one_domain_moves_the_other_only_through_shared_layers(share):
    """An update of G_A alone changes G_B's images exactly when they share layers, and
    the shared weights it moves are the ones G_B runs."""
    torch.manual_seed(0)
    model = make_cogan(share)
    g = model.generator.train()
    optimizer = model.configure_optimizers()[0]
    z = torch.randn(8, 16)
    with torch.no_grad():
        before_b = g.domain("b").eval()(z)
        shared_before = [p.clone() for p in g.shared.parameters()]
    g.train()
    g.domain("a")(z).pow(2).mean().backward()  # a loss of G_A's images alone
    optimizer.step()
    with torch.no_grad():
        after_b = g.domain("b").eval()(z)
    shared_after = list(g.shared.parameters())
    moved = [not torch.equal(p, q) for p, q in zip(shared_after, shared_before, strict=True)]
    assert bool(moved) == (share > 0) and all(moved)
    assert torch.equal(before_b, after_b) == (share == 0)
    assert all(p.grad is None for p in g.own["b"].parameters())


def test_discriminators_share_their_last_layers():
    d = make_cogan(2).discriminator
    assert d.domain("a")[1] is d.domain("b")[1] is d.shared
    assert len(d.own["a"]) == 2 and d.own["a"][0] is not d.own["b"][0]
    x = torch.randn(2, *SHAPE)
    assert torch.equal(d(x, "a"), d.domain("a")(x).squeeze(1))


def test_the_moving_average_keeps_one_shared_module_and_follows_the_generators():
    model = make_cogan(3, ema_decay=0.999)
    average = model.generator_ema
    assert average.domain("a")[0] is average.domain("b")[0] is average.shared
    assert average.shared is not model.generator.shared
    with torch.no_grad():
        for parameter in model.generator.parameters():
            parameter.add_(1.0)
    before = [p.clone() for p in average.parameters()]
    model.update_ema()
    first = 1 - 2 / 11  # the ramp's first step: 1 - (1 + 1) / (10 + 1)
    for after, start in zip(average.parameters(), before, strict=True):
        assert torch.allclose(after, start + first, atol=1e-6)
    drawn = model.sample_pairs(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = average.eval()(torch.randn(2, 16, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(x, y) for x, y in zip(drawn, expected, strict=True))


def test_nets_reject_what_they_cannot_couple():
    with pytest.raises(ConfigError, match=r"model.share_layers must lie in 0..3"):
        CoupledGenerators(16, SHAPE, SHAPE, shared_layers=4)
    with pytest.raises(ConfigError, match=r"model.share_layers must lie in 0..3"):
        CoupledDiscriminators(SHAPE, SHAPE, shared_layers=-1)
    with pytest.raises(ConfigError, match="one image size"):
        CoupledGenerators(16, SHAPE, (1, 64, 64), shared_layers=1)


# --- the pair metrics --------------------------------------------------------------------------


class BandReader(nn.Module):
    """A stand-in digit classifier: the class is the bright one of 10 vertical bands
    (bright is +1 in domain A, -1 in domain B)."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.sign = sign

    def features(self, x):
        return (self.sign * x)[:, 0, :, :30].mean(1).unflatten(1, (10, 3)).mean(2)

    def head(self, features):
        return features

    def forward(self, x):
        return self.head(self.features(x))


def banded(labels: torch.Tensor) -> torch.Tensor:
    """Domain-A images showing each label as its bright band."""
    images = -torch.ones(len(labels), *SHAPE)
    for i, label in enumerate(labels.tolist()):
        images[i, :, :, 3 * label : 3 * label + 3] = 1
    return images


def pair_metrics(a, b, b_to_a=lambda b: -b, reader_b=None):
    labels = torch.arange(1000) % 10  # as many as the samples: fd compares them all
    held_out = banded(labels)
    datamodule = SimpleNamespace(
        labelled=True, num_classes=10, eval_set=lambda: (held_out, -held_out, labels, labels)
    )
    if b_to_a is not None:
        datamodule.b_to_a = b_to_a
    quality = SampleQuality()
    quality.classifiers = {"a": BandReader(1.0), "b": reader_b or BandReader(-1.0)}
    return quality.pair_metrics(datamodule, a, b)


def test_pair_metrics_on_hand_made_pairs():
    a = banded(torch.randint(0, 10, (1000,), generator=torch.Generator().manual_seed(0)))
    perfect = pair_metrics(a, -a)
    assert perfect["pair_agree"] == 1.0 and perfect["pair_psnr"] > 90
    assert perfect["class_entropy_a"] == perfect["class_entropy_b"] > 2.29  # ln 10 = 2.303
    noisy = pair_metrics(
        a, -a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1))
    )
    assert noisy["pair_psnr"] == pytest.approx(26.0, abs=0.2)  # 0.05 rms in [0, 1]: 26 dB
    shuffled = pair_metrics(a, -a[torch.randperm(1000, generator=torch.Generator().manual_seed(2))])
    assert 0.05 < shuffled["pair_agree"] < 0.15  # chance: 0.1
    assert shuffled["pair_psnr"] < 20  # a tenth by chance the same digit, exactly
    assert shuffled["fd_b"] == pytest.approx(perfect["fd_b"], rel=1e-4)  # B alone as good
    # with a known relation, A's classifier reads both images of a pair: only the pair is
    # judged, not how two classifiers agree; without one, each domain's classifier reads its own
    misreading = BandReader(1.0)  # B's classifier reading B images as if they were A's
    assert pair_metrics(a, -a, reader_b=misreading)["pair_agree"] == 1.0
    apart = pair_metrics(a, -a, b_to_a=None)
    assert "pair_psnr" not in apart and apart["pair_agree"] == 1.0
    assert pair_metrics(a, -a, b_to_a=None, reader_b=misreading)["pair_agree"] < 0.15


# --- training and sampling -------------------------------------------------------------------


def test_short_run_scores_pairs_draws_them_and_samples_from_its_checkpoint(
    run_train, tmp_path, capsys
):
    metrics, out = run_train(FAST)
    expected = {"eval/pair_psnr", "eval/pair_agree", "eval/fd_a", "eval/fd_b"}
    expected |= {"eval/class_entropy_a", "loss/d_a", "loss/g_b", "d/fake_b", "lr/g"}
    assert expected <= metrics.keys()
    assert 0 <= metrics["eval/pair_agree"] <= 1
    grid = np.asarray(Image.open(out / "samples" / "last.png"))
    assert grid.shape[:2] == (8 * 34 + 2, 8 * 66 + 2)  # 8 x 8 pairs, each 32 x (32 + 32)
    result = cli_in_process(
        "genlab-sample", f"ckpt={out / 'checkpoints' / 'last.ckpt'}", "n=12",
        f"out={tmp_path / 'drawn'}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    drawn = torch.load(tmp_path / "drawn" / "samples.pt", weights_only=True)
    assert drawn["samples"].shape == (12, 1, 32, 64) and drawn["labels"] is None
    assert (tmp_path / "drawn" / "samples.png").is_file()
    with pytest.raises(SystemExit) as exit_:  # genlab-eval scores one domain: said in one line
        evaluate.main([f"ckpt={out / 'checkpoints' / 'last.ckpt'}"])
    assert exit_.value.code == 2
    line = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(line) == 1 and "holds a CoGAN" in line[0] and "pair_agree" in line[0], line


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=mnist_mini"], "use data=digits_inverted or data=unpaired_folder"),
        (["data=ring"], "use data=digits_inverted or data=unpaired_folder"),
        (["model.share_layers=-1"], "model.share_layers must lie in 0..3"),
        (["model.share_layers=4"], "model.share_layers must lie in 0..3"),
        (["model.generator.shared_layers=1"], "leave the nets' shared_layers"),
        (["model.lr=0"], "model.lr must be > 0"),
    ],
)
def test_cogan_bad_input(overrides, message, run_train):
    with pytest.raises(Exception) as info:  # noqa: PT011 (Hydra may wrap it; see below)
        run_train(["model=cogan", "data=digits_inverted", *overrides, "debug=fdr"])
    error = user_error(info.value)  # what genlab-train prints, in one line
    assert isinstance(error, (ConfigError, DataError)) and message in str(error), info.value
    assert "\n" not in str(error)
