"""UNIT: coupled autoencoders sharing layers, its terms, training and its one-line errors."""

import json
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from genlab.errors import ConfigError, DataError, user_error
from genlab.losses import LeastSquaresLoss
from genlab.models.unit import UNIT, kl_to_standard_normal
from genlab.nets.patchgan import PatchDiscriminator
from genlab.nets.unit import CoupledAutoencoders, LatentDiscriminator

from helpers import cli, cli_in_process, one_line_error

SMALL = [
    "model.autoencoders.width=4",
    "model.autoencoders.n_res=2",
    "model.latent_discriminator.width=8",
    "model.discriminator_a.width=4",
    "model.discriminator_a.n_layers=2",
]
FAST = [
    "debug=fdr",
    "callbacks.sample_quality.num_samples=64",
    "callbacks.sample_quality.classifier_epochs=1",
]


def make_unit(share_layers: int = 1, channels_b: int = 1, **kwargs) -> UNIT:
    nets = CoupledAutoencoders(1, channels_b, 16, width=4, n_down=2, n_res=2,
                               share_layers=share_layers)  # fmt: skip
    return UNIT(
        autoencoders=nets,
        discriminator_a=PatchDiscriminator(1, 16, width=4, n_layers=1, norm="none"),
        discriminator_b=PatchDiscriminator(channels_b, 16, width=4, n_layers=1, norm="none"),
        latent_discriminator=LatentDiscriminator(4, 2, width=8),
        loss=LeastSquaresLoss(),
        optimizer_g=partial(torch.optim.Adam),
        optimizer_d=partial(torch.optim.Adam),
        in_shape=(1, 16, 16),
        out_shape=(channels_b, 16, 16),
        share_layers=share_layers,
        **kwargs,
    )


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- nets ----------------------------------------------------------------------------------


def test_shared_blocks_are_one_set_of_weights_for_both_domains():
    shared = CoupledAutoencoders(1, 1, 16, width=4, n_res=2, share_layers=1)
    apart = CoupledAutoencoders(1, 1, 16, width=4, n_res=2, share_layers=0)
    block = parameter_count(shared.shared_encoder)
    assert block > 0 and parameter_count(shared.shared_decoder) == block
    # sharing one encoder block and one decoder block saves one copy of each
    assert parameter_count(apart) - parameter_count(shared) == 2 * block

    x = torch.rand(2, 1, 16, 16) * 2 - 1
    before = {domain: shared.encode(x, domain).detach() for domain in "ab"}
    with torch.no_grad():  # move the shared block only: both domains' codes move
        for parameter in shared.shared_encoder.parameters():
            parameter.add_(0.1)
    for domain in "ab":
        assert not torch.allclose(shared.encode(x, domain), before[domain])


def test_translation_shapes_and_the_code():
    nets = CoupledAutoencoders(1, 3, 32, width=4, n_down=2, n_res=2, share_layers=2)
    a, b = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    code = nets.encode(a, "a")
    assert code.shape == (2, nets.code_channels, 8, 8) == (2, 16, 8, 8)
    assert nets.translator("ab")(a).shape == (2, 3, 32, 32)
    assert nets.translator("ba")(b).shape == (2, 1, 32, 32)
    assert nets.decode(code, "a").abs().max() <= 1  # tanh
    assert LatentDiscriminator(4, 2)(code).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("training", [True, False])
def test_translating_leaves_the_model_in_its_mode(training):
    model = make_unit().train(training)
    model.translate(torch.zeros(2, 1, 16, 16), "ab")
    assert all(module.training == training for module in model.modules())


def test_kl_of_the_code_on_a_hand_computed_case():
    # KL(N(m, I) || N(0, I)) = |m|^2 / 2 per element, averaged: (1 + 4 + 0 + 9) / 2 / 4
    assert float(kl_to_standard_normal(torch.tensor([[1.0, 2.0], [0.0, -3.0]]))) == 1.75


def test_optimizers_hold_each_weight_once():
    model = make_unit(share_layers=2)
    opt_g, opt_d = model.configure_optimizers()[0]
    g_params = opt_g.param_groups[0]["params"]
    assert len(g_params) == len({id(p) for p in g_params})
    assert {id(p) for p in g_params} == {id(p) for p in model.autoencoders.parameters()}
    d_params = {id(p) for p in opt_d.param_groups[0]["params"]}
    assert {id(p) for p in model.latent_discriminator.parameters()} <= d_params


def test_model_checks_its_settings():
    with pytest.raises(ConfigError, match="model.cycle_weight must be >= 0"):
        make_unit(cycle_weight=-1)
    with pytest.raises(ConfigError, match="model.share_layers must lie in 0..2"):
        CoupledAutoencoders(1, 1, 16, width=4, n_res=2, share_layers=3)
    with pytest.raises(ConfigError, match="code_width and n_down"):
        UNIT(
            CoupledAutoencoders(1, 1, 16, width=4, n_res=2), None, None,
            LatentDiscriminator(8, 2), LeastSquaresLoss(), partial(torch.optim.Adam),
            partial(torch.optim.Adam), (1, 16, 16), (1, 16, 16),
        )  # fmt: skip


# --- training ------------------------------------------------------------------------------


def test_fast_run_translates_both_ways_and_trains_every_net(run_train):
    metrics, out = run_train(
        ["model=unit", "data=digits_inverted", *SMALL, *FAST[1:], "data.batch_size=4",
         "trainer.limit_train_batches=2", "trainer.max_epochs=1", "trainer.log_every_n_steps=1"]
    )  # fmt: skip
    expected = {"eval/psnr_ab", "eval/psnr_ba", "eval/label_kept", "eval/cycle_l1_a"}
    expected |= {"loss/reconstruction", "loss/cycle", "loss/kl", "loss/latent", "loss/d_latent"}
    assert expected <= metrics.keys()
    grid = np.asarray(Image.open(out / "samples" / "last.png"))
    assert grid.shape[1] == 6 * 34 + 2  # a | ab | aba | b | ba | bab
    status = json.loads((out / "metrics.json").read_text())
    assert status["status"] == "completed"


@pytest.mark.parametrize(
    ("weights", "still"),
    [
        ({}, set()),
        ({"latent_adversarial_weight": 0.0}, {"latent_discriminator"}),
    ],
)
def test_a_step_moves_every_net_in_use(weights, still):
    torch.manual_seed(0)
    model = make_unit(**weights)
    nets = ["autoencoders", "discriminator_a", "discriminator_b", "latent_discriminator"]
    before = {name: [p.clone() for p in getattr(model, name).parameters()] for name in nets}
    images, labels = torch.rand(2, 4, 1, 16, 16) * 2 - 1, torch.zeros(4).long()
    batches = DataLoader(TensorDataset(images[0], images[1], labels, labels), batch_size=4)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, train_dataloaders=batches)  # one batch: D's step, then G's
    for name in nets:
        moved = any(
            not torch.equal(old, new)
            for old, new in zip(before[name], getattr(model, name).parameters(), strict=True)
        )
        assert moved == (name not in still), name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=unit", "data=mnist_mini"], "need two image domains: use data=digits_edges"),
        (["model=unit", "data=digits_inverted", "model.share_layers=7"], "0..4"),
        (["model=unit", "data=digits_inverted", "model.kl_weight=-1"], "model.kl_weight"),
        (["model=unit", "data=digits_inverted", "model.autoencoders.share_layers=0"],
         "leave model.autoencoders.share_layers at ${model.share_layers}"),
    ],
)  # fmt: skip
def test_unit_bad_input(overrides, message, run_train):
    with pytest.raises(Exception) as info:  # noqa: PT011 (Hydra may wrap it)
        run_train([*overrides, "debug=fdr"])
    error = user_error(info.value)  # what genlab-train prints, in one line
    assert isinstance(error, (ConfigError, DataError)) and message in str(error), info.value


def test_sampling_unit_says_it_translates(run_train, tmp_path):
    _, out = run_train(
        ["model=unit", "data=digits_inverted", *SMALL, "trainer.max_epochs=1",
         "trainer.limit_train_batches=2", "data.batch_size=4", "~callbacks.sample_quality",
         "trainer.enable_progress_bar=false"]
    )  # fmt: skip
    result = cli_in_process("genlab-sample", f"ckpt={out / 'checkpoints' / 'last.ckpt'}",
                            cwd=tmp_path)  # fmt: skip
    assert "translates images rather than sample them" in one_line_error(result)


@pytest.mark.slow
def test_unit_recipe_keeps_the_digit_both_ways(tmp_path):
    result = cli("genlab-train", "experiment=unit_digits_inverted",
                 "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}",
                 cwd=tmp_path, timeout=1200)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert metrics["eval/label_kept_ab"] >= 0.9 and metrics["eval/label_kept_ba"] >= 0.9
    assert metrics["eval/psnr_ab"] >= 20 and metrics["eval/psnr_ba"] >= 20
