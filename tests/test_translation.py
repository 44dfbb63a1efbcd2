"""Image-to-image translation: pix2pix, CycleGAN, their nets, data and evaluation."""

import json
import random
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from genlab.data.pairs import (
    DigitsEdgesDataModule,
    DigitsInvertedDataModule,
    PairedFolderDataModule,
    UnpairedFolderDataModule,
    sobel_edges,
)
from genlab.errors import ConfigError, DataError, user_error
from genlab.losses import LeastSquaresLoss
from genlab.metrics.translation import image_errors
from genlab.models.translation import CycleGAN, ImagePool
from genlab.nets.patchgan import PatchDiscriminator
from genlab.nets.resnet import ResNetGenerator
from genlab.nets.unet import UNetGenerator

from helpers import cli_in_process, one_line_error, write_png

# small nets, a few batches: the whole training path in seconds
FAST = [
    "debug=fdr",
    "callbacks.sample_quality.num_samples=64",
    "callbacks.sample_quality.classifier_epochs=1",
]
SMALL_PIX2PIX = ["model.generator.width=8", "model.discriminator.width=8"]
SMALL_CYCLEGAN = [
    "model.generator_ab.width=8",
    "model.generator_ab.n_blocks=1",
    "model.discriminator_a.width=8",
    "model.discriminator_a.n_layers=2",
]


# --- nets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("channels", [(1, 3), (3, 1)])
def test_unet_and_resnet_keep_the_image_size(size, channels):
    c_in, c_out = channels
    x = torch.randn(2, c_in, size, size)
    for net in (
        UNetGenerator(c_in, c_out, size, width=8),
        ResNetGenerator(c_in, c_out, size, width=8, n_blocks=1),
    ):
        y = net(x)
        assert y.shape == (2, c_out, size, size)
        assert y.abs().max() <= 1  # tanh output


def test_unet_skips_carry_the_input_through():
    """Each decoder level sees its encoder level: the gradient of one output pixel reaches
    the input pixel under it even with the bottleneck cut off."""
    net = UNetGenerator(1, 1, 16, width=4, dropout=0.0).eval()
    with torch.no_grad():
        for parameter in net.ups[0].parameters():  # the 1 x 1 bottleneck's way up
            parameter.zero_()
    x = torch.randn(1, 1, 16, 16, requires_grad=True)
    net(x)[0, 0, 5, 5].backward()
    assert x.grad[0, 0, 5, 5].abs() > 0


@pytest.mark.parametrize(("size", "n_layers", "patches"), [(32, 2, 6), (32, 3, 2), (64, 3, 6)])
def test_patchgan_gives_one_logit_per_patch(size, n_layers, patches):
    d = PatchDiscriminator([1, 3], size, width=8, n_layers=n_layers)  # pix2pix: 1 + 3 channels
    assert d(torch.randn(2, 4, size, size)).shape == (2, 1, patches, patches)


def test_nets_reject_sizes_they_cannot_take():
    with pytest.raises(ConfigError, match="data.image_size=32"):
        UNetGenerator(1, 1, 28)
    with pytest.raises(ConfigError, match="n_layers"):
        PatchDiscriminator(1, 16, n_layers=3)
    with pytest.raises(ConfigError, match="divisible by 4"):
        ResNetGenerator(1, 1, 30)


# --- the image pool and the cycle loss -------------------------------------------------------


def tagged(first: int, n: int) -> torch.Tensor:
    """n 1x1x1 images whose value is their id."""
    return torch.arange(first, first + n, dtype=torch.float).view(n, 1, 1, 1)


def test_image_pool_fills_then_swaps_half_the_time():
    random.seed(0)
    pool = ImagePool(size=50)
    first = tagged(0, 50)
    assert torch.equal(pool.query(first), first)  # filling: the images come back as they are
    returned_stored, total = 0, 0
    for step in range(200):
        batch = tagged(1000 + 10 * step, 10)
        out = pool.query(batch)
        assert out.shape == batch.shape
        returned_stored += int((out != batch).sum())
        total += len(batch)
        assert len(pool.images) == 50
    share = returned_stored / total
    assert 0.45 < share < 0.55, share  # 2,000 draws: 0.5 +- 0.011 (1 sd)


def test_image_pool_of_size_zero_is_off():
    batch = tagged(0, 4)
    assert torch.equal(ImagePool(0).query(batch), batch)


def make_cyclegan(g_ab: nn.Module, g_ba: nn.Module, **kwargs) -> CycleGAN:
    shape = (1, 16, 16)
    return CycleGAN(
        generator_ab=g_ab,
        generator_ba=g_ba,
        discriminator_a=PatchDiscriminator(1, 16, width=4, n_layers=1),
        discriminator_b=PatchDiscriminator(1, 16, width=4, n_layers=1),
        loss=LeastSquaresLoss(),
        optimizer_g=partial(torch.optim.Adam),
        optimizer_d=partial(torch.optim.Adam),
        in_shape=shape,
        out_shape=shape,
        **kwargs,
    )


class Negate(nn.Module):
    def forward(self, x):
        return -x


def test_cycle_loss_is_zero_for_inverse_generators_only():
    a, b = torch.rand(4, 1, 16, 16) * 2 - 1, torch.rand(4, 1, 16, 16) * 2 - 1

    def cycle(model):
        return float(model.cycle_loss(a, b, model.generator_ba(b), model.generator_ab(a)))

    assert cycle(make_cyclegan(nn.Identity(), nn.Identity())) == 0.0
    assert cycle(make_cyclegan(Negate(), Negate())) == 0.0  # inversion undoes itself
    assert cycle(make_cyclegan(Negate(), nn.Identity())) > 0.5  # not inverses: a real cost


def test_identity_loss_needs_domains_of_one_shape():
    model = partial(
        CycleGAN,
        nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity(), LeastSquaresLoss(),
        None, None, in_shape=(1, 16, 16), out_shape=(3, 16, 16),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="identity_weight=0"):
        model()
    model(identity_weight=0)


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    model = make_cyclegan(nn.Identity(), nn.Identity())
    model._trainer = type("T", (), {"max_epochs": 10})()
    factors = [model.decay_factor(epoch) for epoch in range(10)]
    assert factors[:5] == [1.0] * 5
    assert factors[5:] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    model.decay_start_epoch = 8
    assert model.decay_factor(9) == pytest.approx(0.5)


def test_image_errors_psnr():
    target = torch.zeros(2, 1, 4, 4)
    assert image_errors(target, target)["l1"] == 0.0
    off = target + 0.2  # 0.1 in [0, 1] units: MSE 0.01, PSNR 20 dB
    errors = image_errors(off, target)
    assert errors["l1"] == pytest.approx(0.1)
    assert errors["psnr"] == pytest.approx(20.0, abs=1e-4)


# --- data ------------------------------------------------------------------------------------


def test_digits_edges_pairs_each_digit_with_its_edge_map():
    data = DigitsEdgesDataModule(image_size=32, seed=0)
    data.setup()
    a, b, labels_a, labels_b = data.real_set("train")
    assert a.shape[1:] == b.shape[1:] == (1, 32, 32)
    assert torch.equal(labels_a, labels_b)
    assert data.train_set[0].dtype == torch.uint8  # stored as uint8, one level is 1 / 127.5
    assert torch.allclose(a[:10], sobel_edges(b[:10]), atol=0.5 / 127.5 + 1e-6)
    val_a, val_b, val_labels, _ = data.eval_set()
    assert len(val_a) == 1000 and torch.bincount(val_labels).tolist() == [100] * 10
    assert data.aligned_eval
    swapped = DigitsEdgesDataModule(direction="BtoA", image_size=32, seed=0)
    swapped.setup()
    swapped_a, swapped_b, _, _ = swapped.real_set("train")
    assert torch.equal(swapped_a, b) and torch.equal(swapped_b, a)


def test_digits_inverted_domains_come_from_disjoint_halves():
    data = DigitsInvertedDataModule(image_size=32, seed=0, batch_size=50)
    data.setup()
    a, b, labels_a, labels_b = data.real_set("train")
    assert len(a) == len(b) == 2000
    # no training digit appears in both domains (B holds inverted digits)
    stored_a, stored_b, _, _ = data.train_set
    a_keys = {bytes(x.numpy().tobytes()) for x in stored_a}
    assert not any(bytes((255 - x).numpy().tobytes()) in a_keys for x in stored_b)
    val_a, val_b, val_labels_a, val_labels_b = data.eval_set()
    assert torch.allclose(val_b, -val_a, atol=1e-6) and torch.equal(val_labels_a, val_labels_b)
    assert not data.paired and data.aligned_eval


def test_unpaired_loader_reshuffles_the_pairs_every_epoch():
    data = DigitsInvertedDataModule(image_size=16, seed=0, batch_size=100)
    loader = data.train_dataloader()
    assert len(loader) == 20

    def pairs(epoch):
        loader.set_epoch(epoch)
        batches = list(loader)
        labels_a = torch.cat([batch[2] for batch in batches])
        labels_b = torch.cat([batch[3] for batch in batches])
        return labels_a, labels_b

    first_a, first_b = pairs(0)
    assert sorted(first_a.tolist()) == sorted(data.train_set[2].tolist())  # each A once
    again_a, again_b = pairs(0)
    assert torch.equal(first_a, again_a) and torch.equal(first_b, again_b)  # reproducible
    second_a, second_b = pairs(1)
    assert not torch.equal(first_a, second_a)
    # the two domains are not shuffled in step: label agreement stays at chance
    assert (first_a == first_b).float().mean() < 0.2


def side_by_side(left: int, right: int) -> np.ndarray:
    image = np.zeros((16, 32, 3))
    image[:, :16] = left
    image[:, 16:] = right
    return image


def test_paired_folder_reads_the_side_by_side_layout(tmp_path):
    for i in range(4):
        write_png(tmp_path / "train" / f"{i}.png", side_by_side(0, 255))
    write_png(tmp_path / "val" / "0.png", side_by_side(0, 255))
    data = PairedFolderDataModule(root=str(tmp_path), image_size=16, batch_size=2)
    data.setup()
    a, b, _, _ = data.real_set("train")
    assert a.shape == (4, 3, 16, 16) and len(data.eval_set()[0]) == 1
    assert torch.allclose(a, torch.full_like(a, -1)) and torch.allclose(b, torch.ones_like(b))
    swapped = PairedFolderDataModule(root=str(tmp_path), image_size=16, direction="BtoA")
    swapped.setup()
    assert torch.allclose(swapped.real_set("train")[0], b)


def test_unpaired_folder_layout_and_a_missing_trainB(tmp_path):
    for i in range(5):
        write_png(tmp_path / "trainA" / f"{i}.png", np.full((20, 20, 3), 30))
    with pytest.raises(DataError, match=r"no trainB/ folder; a CycleGAN dataset holds trainA/"):
        UnpairedFolderDataModule(root=str(tmp_path), image_size=16)
    for i in range(3):
        write_png(tmp_path / "trainB" / f"{i}.png", np.full((20, 20, 3), 200))
    write_png(tmp_path / "testA" / "0.png", np.full((20, 20, 3), 30))
    data = UnpairedFolderDataModule(root=str(tmp_path), image_size=16, batch_size=1)
    data.setup()
    a, b, _, _ = data.train_set
    assert a.shape == (5, 3, 16, 16) and b.shape == (2, 3, 16, 16)  # one B held out
    val_a, val_b, _, _ = data.eval_set()
    assert len(val_a) == 1 and len(val_b) == 1
    assert not data.aligned_eval and not data.labelled


# --- training --------------------------------------------------------------------------------


def test_pix2pix_fast_dev_run(run_train):
    metrics, out = run_train(["model=pix2pix", "data=digits_edges", *SMALL_PIX2PIX, *FAST])
    assert {"eval/l1", "eval/psnr", "eval/label_kept", "eval/real_acc_b"} <= metrics.keys()
    assert {"loss/d", "loss/g_adv", "loss/l1", "lr/g"} <= metrics.keys()
    # one batch of training: the translations are still far from their targets
    assert metrics["eval/l1"] > 0.05 and 0 < metrics["eval/psnr"] < 20
    grid = np.asarray(Image.open(out / "samples" / "epoch_000.png"))
    # 8 rows of input | translated | target, 32-pixel images with 2-pixel padding
    assert grid.shape[:2] == (8 * 34 + 2, 3 * 34 + 2)
    status = json.loads((out / "metrics.json").read_text())
    assert status["status"] == "completed"


def test_cyclegan_fast_dev_run_keeps_its_pools_in_the_checkpoint(run_train):
    metrics, out = run_train(
        ["model=cyclegan", "data=digits_inverted", *SMALL_CYCLEGAN, *FAST[1:],
         "trainer.limit_train_batches=2", "trainer.max_epochs=1", "data.batch_size=4",
         "trainer.log_every_n_steps=1"]
    )  # fmt: skip
    expected = {"eval/cycle_l1_a", "eval/cycle_l1_b", "eval/psnr_ab", "eval/psnr_ba"}
    expected |= {"eval/label_kept_ab", "eval/label_kept_ba", "eval/label_kept", "loss/cycle"}
    assert expected <= metrics.keys()
    grid = np.asarray(Image.open(out / "samples" / "last.png"))
    assert grid.shape[1] == 6 * 34 + 2  # a | ab | aba | b | ba | bab
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    pools = checkpoint["image_pools"]
    assert len(pools["a"]["images"]) == len(pools["b"]["images"]) == 8  # 2 batches of 4
    restored = make_cyclegan(nn.Identity(), nn.Identity())
    restored.on_load_checkpoint(checkpoint)
    assert torch.equal(torch.stack(restored.pool_a.images), torch.stack(pools["a"]["images"]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=pix2pix", "data=mnist_mini"], "use data=digits_edges"),
        (["model=dcgan", "data=digits_edges"], "for model=pix2pix, model=cyclegan or"),
        (["model=pix2pix", "data=digits_edges", "data.image_size=28"], "data.image_size=32"),
        (["model=cyclegan", "data=digits_inverted", "model.lr=0"], "model.lr must be > 0"),
    ],
)
def test_translation_bad_input(overrides, message, run_train):
    with pytest.raises(Exception) as info:  # noqa: PT011 (Hydra may wrap it; see below)
        run_train([*overrides, "debug=fdr"])
    error = user_error(info.value)  # what genlab-train prints, in one line
    assert isinstance(error, (ConfigError, DataError)) and message in str(error), info.value


def test_sampling_a_translation_model_says_it_translates(run_train, tmp_path):
    _, out = run_train(
        ["model=pix2pix", "data=digits_edges", *SMALL_PIX2PIX, "trainer.max_epochs=1",
         "trainer.limit_train_batches=2", "~callbacks.sample_quality",
         "trainer.enable_progress_bar=false"]
    )  # fmt: skip
    result = cli_in_process("genlab-sample", f"ckpt={out / 'checkpoints' / 'last.ckpt'}",
                            cwd=tmp_path)  # fmt: skip
    assert "translates images rather than sample them" in one_line_error(result)
