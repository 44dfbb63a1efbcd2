"""StackGAN: its nets, conditioning augmentation, the two stages, sampling and its errors."""

import copy
import json
import math
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from genlab.errors import ConfigError, DataError, user_error
from genlab.losses import NonSaturatingLoss
from genlab.models.stackgan import StackGAN, condition_kl
from genlab.nets.conv import DCGANDiscriminator
from genlab.nets.stackgan import (
    ConditioningAugmentation,
    StageOneGenerator,
    StageOutput,
    StageTwoGenerator,
    stage_one_discriminator,
    upsampled_logits,
)

from helpers import cli_in_process, final_state

# tiny nets, a few batches: both stages in seconds
TINY = [
    "model=stackgan",
    "data=mnist_mini",
    "model.latent_dim=8",
    "model.cond_dim=4",
    "model.generator1.width=4",
    "model.discriminator1.width=4",
    "model.generator2.width=4",
    "model.generator2.n_blocks=1",
    "model.discriminator2.width=4",
    "model.stage1_epochs=1",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.enable_progress_bar=false",
]


def make_stackgan(size: int = 28, augment: bool = True) -> StackGAN:
    shape = (1, size, size)
    return StackGAN(
        generator1=StageOneGenerator(8, shape, 10, cond_dim=4, augment=augment, width=4),
        discriminator1=stage_one_discriminator(shape, 10, width=4),
        generator2=StageTwoGenerator(shape, 10, cond_dim=4, augment=augment, width=4, n_blocks=1),
        discriminator2=DCGANDiscriminator(shape, 10, width=4),
        loss=NonSaturatingLoss(),
        optimizer_g=partial(torch.optim.Adam),
        optimizer_d=partial(torch.optim.Adam),
        image_shape=shape,
        latent_dim=8,
        num_classes=10,
        cond_dim=4,
        conditioning_augmentation=augment,
        stage1_epochs=1,
    )


# --- nets and conditioning augmentation ------------------------------------------------------


@pytest.mark.parametrize("size", [28, 32])
def test_stage_one_draws_half_the_size_and_stage_two_the_full_size(size):
    model = make_stackgan(size)
    labels = torch.tensor([0, 3, 9])
    z, eps1, eps2 = model.noise_for(3)
    coarse = model.generator1(z, labels, eps1)
    assert coarse.image.shape == (3, 1, size // 2, size // 2)
    assert coarse.mu.shape == coarse.log_sigma.shape == (3, 4)
    fine = model.generator2(coarse.image, labels, eps2)
    assert fine.image.shape == (3, 1, size, size)
    assert model.discriminator1(coarse.image, labels).score.shape == (3,)
    assert model.discriminator2(fine.image, labels).score.shape == (3,)
    for stage in (1, 2):  # stage I's images are upsampled to the data's size
        assert model.sample(5, stage=stage).shape == (5, 1, size, size)
    assert model.sample_shape() == (1, size, size)


def test_stage_two_with_its_correction_zeroed_returns_stage_one_upsampled():
    g2 = StageTwoGenerator((1, 28, 28), 10, cond_dim=4, width=4, n_blocks=1)
    with torch.no_grad():
        g2.upsample[-1].weight.zero_()
        g2.upsample[-1].bias.zero_()
    coarse = torch.rand(2, 1, 14, 14) * 2 - 1
    out = g2(coarse, torch.tensor([1, 2]), torch.randn(2, 4)).image
    assert torch.allclose(out, torch.tanh(upsampled_logits(coarse, 28)))
    flat = g2(torch.full((1, 1, 14, 14), 0.5), torch.tensor([3]), torch.randn(1, 4)).image
    assert torch.allclose(flat, torch.full((1, 1, 28, 28), 0.5))  # a flat image stays itself


def test_conditioning_augmentation_kl_on_a_hand_worked_case():
    ca = ConditioningAugmentation(num_classes=2, cond_dim=2)
    with torch.no_grad():  # class 1: mu = (1, 0), sigma = (1, 2)
        ca.embed.weight[1] = torch.tensor([1.0, 0.0, 0.0, math.log(2.0)])
    eps = torch.tensor([[0.5, -1.0]])
    c, mu, log_sigma = ca(torch.tensor([1]), eps)
    assert torch.allclose(c, torch.tensor([[1.5, -2.0]]))  # mu + sigma * eps
    # per dimension 0.5 (mu^2 + sigma^2 - 1) - log sigma: 0.5 and 1.5 - ln 2; their mean
    expected = (0.5 + 1.5 - math.log(2.0)) / 2
    kl = condition_kl(StageOutput(c, mu, log_sigma)).detach()
    assert float(kl) == pytest.approx(expected, rel=1e-6)
    # at the prior (class 0 starts with sigma = 1) only mu costs anything
    with torch.no_grad():
        ca.embed.weight[0, :2] = 0.0
    at_prior = condition_kl(StageOutput(c, *ca(torch.tensor([0]), eps)[1:])).detach()
    assert float(at_prior) == 0.0


def test_without_augmentation_the_condition_is_a_fixed_embedding_and_costs_nothing():
    ca = ConditioningAugmentation(num_classes=3, cond_dim=4, augment=False)
    labels = torch.tensor([2, 2])
    c, mu, log_sigma = ca(labels, torch.randn(2, 4))
    assert mu is None and log_sigma is None and torch.equal(c[0], c[1])
    assert float(condition_kl(StageOutput(c, mu, log_sigma))) == 0.0
    model = make_stackgan(augment=False)
    assert model.kl_weight == 0.0


# --- the two stages --------------------------------------------------------------------------


class Snapshots(L.Callback):
    """The weights and buffers of every net at the start of stage II and at the end."""

    def __init__(self) -> None:
        self.start, self.end = {}, {}

    @staticmethod
    def states(module):
        nets = ("generator1", "discriminator1", "generator2", "discriminator2")
        return {name: copy.deepcopy(getattr(module, name).state_dict()) for name in nets}

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self.start = self.states(pl_module)

    def on_train_end(self, trainer, pl_module):
        self.end = self.states(pl_module)


def changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_stage_one_is_frozen_while_stage_two_trains():
    torch.manual_seed(0)
    model = make_stackgan()
    data = TensorDataset(torch.rand(16, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (16,)))
    snapshots = Snapshots()
    trainer = L.Trainer(
        max_epochs=2, limit_train_batches=2, callbacks=[snapshots], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=8))
    start, end = snapshots.start, snapshots.end
    # G1 and D1: not a weight, not a BatchNorm statistic moved (G1 ran in eval mode)
    assert not changed(start["generator1"], end["generator1"])
    assert not changed(start["discriminator1"], end["discriminator1"])
    assert changed(start["generator2"], end["generator2"])
    assert changed(start["discriminator2"], end["discriminator2"])
    assert int(model.stage_reached) == 2


def test_sampling_follows_the_stage_reached_or_the_stage_asked_for():
    model = make_stackgan()

    def draw(**kwargs):
        return model.sample(4, generator=torch.Generator().manual_seed(1), **kwargs)

    assert torch.equal(draw(), draw(stage=1))  # before stage II has trained: stage I
    model.stage_reached.fill_(2)
    assert torch.equal(draw(), draw(stage=2)) and not torch.equal(draw(), draw(stage=1))
    model.sample_stage = 1
    assert torch.equal(draw(), draw(stage=1))
    with pytest.raises(ConfigError, match="stages 1 and 2"):
        draw(stage=3)


# --- training, sampling from the checkpoint, resume ------------------------------------------


def test_a_short_run_trains_both_stages_and_genlab_sample_draws_stage_two(run_train, tmp_path):
    fast = [
        "callbacks.sample_quality.num_samples=100",
        "callbacks.sample_quality.classifier_epochs=1",
    ]
    metrics, out = run_train([*TINY, *fast, "trainer.log_every_n_steps=1"])
    assert {"eval/cond_acc", "eval/fd", "eval/fd_floor", "eval/recall"} <= metrics.keys()
    assert {"loss/d2", "loss/g2", "loss/kl2", "lr/g1", "lr/d2"} <= metrics.keys()
    grid = np.asarray(Image.open(out / "samples" / "last.png"))
    assert grid.shape[:2] == (10 * 30 + 2, 8 * 30 + 2)  # a row of 8 per class, 28-pixel digits
    stages = np.asarray(Image.open(out / "samples" / "stages" / "last.png"))
    assert stages.shape[0] > 2 * stages.shape[1]  # 20 rows (stage I above stage II) of 8
    checkpoint = out / "checkpoints" / "last.ckpt"
    assert int(torch.load(checkpoint, weights_only=False)["state_dict"]["stage_reached"]) == 2
    result = cli_in_process("genlab-sample", f"ckpt={checkpoint}", "n=12", "labels=7",
                            f"out={tmp_path / 'drawn'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    drawn = torch.load(tmp_path / "drawn" / "samples.pt")
    assert drawn["samples"].shape == (12, 1, 28, 28) and drawn["labels"].tolist() == [7] * 12


def test_a_run_cut_in_stage_two_resumes_exactly(run_train):
    overrides = [o for o in TINY if not o.startswith("trainer.limit_train_batches")]
    overrides += ["~callbacks.sample_quality", "trainer.limit_train_batches=3"]
    _, full_dir = run_train(overrides, name="full")
    cut = ["+callbacks.cut._target_=helpers.InterruptAtBatch", "+callbacks.cut.epoch=1",
           "+callbacks.cut.batch=1"]  # fmt: skip
    with pytest.raises(SystemExit):
        run_train([*overrides, *cut], name="cut")
    cut_dir = full_dir.parent / "cut"
    assert json.loads((cut_dir / "metrics.json").read_text())["status"] == "interrupted"
    run_train([*overrides, "ckpt_path=last"], name="cut")
    full_state, resumed_state = final_state(full_dir), final_state(cut_dir)
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)


# --- one-line errors -------------------------------------------------------------------------


def unlabelled_folder(tmp_path) -> str:
    for i in range(8):
        Image.fromarray(np.full((28, 28), 30 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return f"data.root={tmp_path}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=mnist_mini", "model.num_classes=0"], "StackGAN is class-conditional"),
        (["data=ring"], "StackGAN draws images, but the data holds points"),
        (["data=image_folder", "FOLDER", "data.batch_size=2"], "StackGAN needs labelled images"),
        (["data=digits", "data.image_size=30"], "must be a multiple of 4"),
        (["data=mnist_mini", "model.stage1_epochs=0"], "model.stage1_epochs must be >= 1"),
        (["data=mnist_mini", "model.stage1_epochs=3", "trainer.max_epochs=3",
          "trainer.limit_train_batches=1"], "leaves no epoch of trainer.max_epochs=3 for stage II"),
        (["data=mnist_mini", "model.kl_weight=-1"], "model.kl_weight must be >= 0"),
    ],
)  # fmt: skip
def test_stackgan_bad_input(overrides, message, run_train, tmp_path):
    overrides = [unlabelled_folder(tmp_path) if o == "FOLDER" else o for o in overrides]
    with pytest.raises(Exception) as info:  # noqa: PT011 (Hydra may wrap it; see below)
        run_train(["model=stackgan", *overrides, "~callbacks.sample_quality"])
    error = user_error(info.value)  # what genlab-train prints, in one line
    assert isinstance(error, (ConfigError, DataError)) and message in str(error), info.value
    assert "\n" not in str(error)
