"""Stacked MNIST: the triples, their images and labels, the mode count read back, and
genlab-eval's mode count and channel features."""

import json
import math
import os
import re
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from genlab import evaluate, evaluate_stacked
from genlab.callbacks.evaluation import SampleQuality
from genlab.data.images import held_out_split, mnist_mini
from genlab.data.pixels import to_model_range
from genlab.data.stacked import StackedDigits, StackedMnistDataModule
from genlab.errors import ConfigError, DataError, user_error
from genlab.metrics import batched
from genlab.metrics.stacked import ChannelReader, channel_reader, mode_metrics

from helpers import compose_train

SMALL = {"num_train": 300, "num_val": 200, "mode_samples": 200, "batch_size": 16}


def stacked(seed: int = 0, **settings) -> StackedMnistDataModule:
    datamodule = StackedMnistDataModule(seed=seed, **(SMALL | settings))
    datamodule.setup()
    return datamodule


# --- data ----------------------------------------------------------------------------------


def test_each_channel_is_a_digit_and_the_label_is_the_triple():
    datamodule = stacked()
    (train_digits, train_labels), _ = datamodule.digits()
    images, labels = datamodule.train_set
    assert isinstance(images, StackedDigits) and images.shape == (300, 3, 28, 28)
    rows = torch.tensor([0, 7, 299])
    picked = images.take(rows)
    assert picked.dtype == torch.uint8 and picked.shape == (3, 3, 28, 28)
    for row, image in zip(rows.tolist(), picked, strict=True):
        r, g, b = images.triples[row].tolist()
        for channel, index in enumerate((r, g, b)):
            assert torch.equal(image[channel], train_digits[index, 0])
        assert labels[row] == 100 * train_labels[r] + 10 * train_labels[g] + train_labels[b]
    x, y = next(iter(datamodule.train_dataloader()))
    assert x.shape == (16, 3, 28, 28) and x.dtype == torch.float32 and y.shape == (16,)
    assert x.min() >= -1 and x.max() <= 1 and x.min() == -1  # mnist_mini's normalisation
    assert 0 <= int(labels.min()) and int(labels.max()) <= 999


def test_digits_come_from_mnist_minis_own_split():
    """Training triples from mnist_mini's training digits, held-out ones from its held-out
    digits: the split data=mnist_mini makes with the same seed."""
    datamodule = stacked(seed=3)
    images, labels = mnist_mini()
    train, val = held_out_split(labels, True, 0.2, 3)
    assert len(train) == 4000 and len(val) == 1000
    assert torch.equal(datamodule.train_set[0].digits, images[train])
    assert torch.equal(datamodule.val_set[0].digits, images[val])
    digits, digit_labels = datamodule.channel_digits()  # what the classifier learns from
    assert torch.equal(digits, to_model_range(images[train]))
    assert torch.equal(digit_labels, labels[train])


def test_triples_follow_the_seed():
    a, b, c = stacked(seed=1), stacked(seed=1), stacked(seed=2)
    assert torch.equal(a.train_set[0].triples, b.train_set[0].triples)
    assert torch.equal(a.val_set[1], b.val_set[1])
    assert not torch.equal(a.train_set[0].triples, c.train_set[0].triples)


def test_a_split_keeps_its_digits_once_and_three_indices_a_triple():
    datamodule = stacked(num_train=20_000)
    images = datamodule.train_set[0]
    as_images = 20_000 * 3 * 28 * 28
    assert images.nbytes == 4000 * 28 * 28 + 20_000 * 3 * 8
    assert images.nbytes < as_images / 5
    assert images.subset(np.array([5, 6])).digits is images.digits  # no copy of the digits


def test_real_set_is_the_base_classes_seeded_choice():
    datamodule = stacked(num_val=200)
    x, y = datamodule.real_set("val", limit=50)
    rows = torch.randperm(200, generator=torch.Generator().manual_seed(0))[:50].sort().values
    assert x.shape == (50, 3, 28, 28) and torch.equal(y, datamodule.val_set[1][rows])
    assert torch.equal(x, to_model_range(datamodule.val_set[0].take(rows)))
    assert torch.equal(datamodule.eval_set()[1], datamodule.val_set[1])  # under the limit: all


# --- the mode count --------------------------------------------------------------------------


def test_mode_metrics_on_hand_made_triples():
    one = mode_metrics(torch.full((500,), 123))
    assert one["modes"] == 1 and one["reverse_kl"] == pytest.approx(math.log(1000))
    even = mode_metrics(torch.arange(1000).repeat(3))
    assert even["modes"] == 1000 and even["reverse_kl"] == pytest.approx(0, abs=1e-12)
    two = mode_metrics(torch.tensor([4, 4, 4, 999]))  # p = 3/4, 1/4
    expected = 0.75 * math.log(750) + 0.25 * math.log(250)
    assert two["modes"] == 2 and two["reverse_kl"] == pytest.approx(expected)


class Brightness(nn.Module):
    """A stand-in digit classifier: a channel of constant grey level d/10 reads as digit d."""

    def features(self, x):
        return x.mean(dim=(1, 2, 3))[:, None]

    def head(self, features):
        return -((features * 10 - torch.arange(10)) ** 2)

    def forward(self, x):
        return self.head(self.features(x))


def test_channel_reader_reads_each_channel_in_order():
    digits = torch.tensor([[3, 0, 7], [9, 9, 1], [0, 5, 5]])
    images = (digits / 10)[:, :, None, None].expand(-1, -1, 4, 4)
    reader = ChannelReader(Brightness())
    assert reader.classes(images).tolist() == [307, 991, 55]
    assert reader(images).shape == (3, 1000)
    assert reader(images).argmax(dim=1).tolist() == [307, 991, 55]
    assert reader.features(images).shape == (3, 3)


def test_real_held_out_triples_read_back_near_every_mode(tmp_path):
    """The floor: 6,000 real triples show (nearly) every mode and a small KL (999 / (2 x
    6,000) = 0.083 from the sampling alone, a little more from this briefly trained
    classifier's misreadings), and read right as often as three independent digits do
    (acc^3)."""
    datamodule = stacked(num_val=6000, mode_samples=6000)
    quality = SampleQuality(cache_dir=str(tmp_path), classifier_epochs=2)
    reader = quality.get_classifier(datamodule)
    held_out, held_out_labels = datamodule.digits()[1]
    digit_acc = float(
        (batched(reader.classifier, to_model_range(held_out)).argmax(1) == held_out_labels)
        .float()
        .mean()
    )
    floor = quality.stacked_modes(datamodule, RealTriples(datamodule))
    assert floor["modes_real"] >= 990 and floor["reverse_kl_real"] < 0.15
    assert floor["real_acc"] == pytest.approx(digit_acc**3, abs=0.03)
    assert floor["modes"] >= 990 and floor["reverse_kl"] < 0.15  # real triples as samples


class RealTriples:
    """A stand-in model whose samples are fresh triples of the held-out digits."""

    def __init__(self, datamodule):
        self.digits = datamodule.val_set[0].digits

    def resolve_labels(self, n, labels):
        return None

    def sample(self, n, labels=None, generator=None):
        triples = torch.randint(len(self.digits), (n, 3), generator=generator)
        return to_model_range(StackedDigits(self.digits, triples).load())


def test_a_collapsed_generator_shows_one_mode(tmp_path):
    datamodule = stacked()
    quality = SampleQuality(cache_dir=str(tmp_path), classifier_epochs=1)

    class OneImage(RealTriples):
        def sample(self, n, labels=None, generator=None):
            return super().sample(1, generator=generator).expand(n, -1, -1, -1)

    found = quality.stacked_modes(datamodule, OneImage(datamodule))
    assert found["modes"] == 1 and found["reverse_kl"] == pytest.approx(math.log(1000))


# --- a run ---------------------------------------------------------------------------------

FAST = [
    "debug=fdr",
    "data.num_train=256",
    "data.num_val=300",
    "data.mode_samples=300",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "callbacks.sample_quality.num_samples=64",
    "callbacks.sample_quality.classifier_epochs=1",
]


@pytest.mark.parametrize("pack", [1, 2])
def test_the_recipes_log_the_mode_count(pack, run_train):
    """experiment=dcgan_stacked_mnist, and pacdcgan2_stacked_mnist (D on packs of 2)."""
    recipe = "dcgan" if pack == 1 else f"pacdcgan{pack}"
    metrics, out = run_train([f"experiment={recipe}_stacked_mnist", *FAST])
    recorded = OmegaConf.load(out / ".hydra" / "config.yaml")
    assert recorded.model.pack == pack and recorded.data.batch_size == 64 * pack
    assert [row.name for row in recorded.reference.rows] == ["DCGAN", "PacDCGAN2"]
    found = {"eval/modes", "eval/reverse_kl", "eval/modes_real", "eval/reverse_kl_real"}
    found |= {"eval/real_acc", "eval/fd", "eval/fd_floor", "eval/class_entropy"}
    assert found <= metrics.keys()
    assert 1 <= metrics["eval/modes"] <= 300
    assert metrics["eval/class_entropy"] <= math.log(1000)
    grid = np.asarray(Image.open(out / "samples" / "last.png").convert("RGB"))
    assert grid.ndim == 3 and grid.shape[2] == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.channels=1"], "3-channel images of 1000 classes"),
        (["data.num_classes=10"], "3-channel images of 1000 classes"),
        (["data.num_val=100"], "raise data.num_val or lower data.mode_samples"),
        (["data.mode_samples=0"], "data.mode_samples=0 must lie in 1..data.num_val"),
        (["data.num_train=0"], "data.num_train must be >= 1"),
        (["data.image_size=4"], "data.image_size must be >= 8"),
        (["data.val_fraction=1.5"], "data.val_fraction must lie in (0, 1)"),
    ],
)
def test_bad_settings_stop_in_one_line(overrides, message, run_train):
    with pytest.raises(Exception) as info:  # noqa: PT011 (Hydra may wrap it; see below)
        run_train(["experiment=dcgan_stacked_mnist", *FAST, *overrides])
    error = user_error(info.value)  # what genlab-train prints, in one line
    assert isinstance(error, (ConfigError, DataError)) and message in str(error), info.value


# --- genlab-eval ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """experiment=dcgan_stacked_mnist with tiny nets after 32 steps at a high learning rate
    (fewer leave every sample read as one triple): its last.ckpt."""
    from genlab.train import train

    output_dir = tmp_path_factory.mktemp("stacked")
    overrides = [
        "experiment=dcgan_stacked_mnist", "trainer.max_epochs=2", "data.batch_size=16",
        "model.lr=2e-3", "trainer.enable_progress_bar=false", "logger=none", *FAST[1:6],
        "~callbacks.sample_quality", "~callbacks.sample_plots",
    ]  # fmt: skip
    train(compose_train(overrides, output_dir))
    return output_dir / "checkpoints" / "last.ckpt"


def run_eval(capsys, *args: str) -> tuple[int, str, str]:
    """genlab-eval ARGS through its main: (exit status, stdout, stderr)."""
    try:
        evaluate.main(list(args))
    except SystemExit as exit_:
        return exit_.code, *capsys.readouterr()
    return 0, *capsys.readouterr()


def test_eval_counts_the_modes_of_its_samples(checkpoint, monkeypatch, capsys):
    """genlab-eval on stacked MNIST: modes and reverse_kl of its n samples, each channel read
    by the digit classifier (mode_metrics of the same samples read the callback's way), and
    fid, kid and prdc in that classifier's features of the three channels side by side."""
    # the reader briefly trained, as in the callback's tests (cached in $GENLAB_DATA)
    monkeypatch.setattr(evaluate_stacked, "channel_reader", partial(channel_reader, epochs=1))
    code, out, err = run_eval(capsys, f"ckpt={checkpoint}", "n=300", "batch_size=300")
    assert code == 0, err
    saved = json.loads((checkpoint.parent / "eval.json").read_text())
    assert set(saved["metrics"]) == {
        "fid", "kid", "kid_std", "precision", "recall", "density", "coverage",
        "modes", "reverse_kl",
    }  # fmt: skip
    assert saved["feature_dim"] == 3 * 128 and saved["n"] == 300
    assert saved["feature_extractor"].startswith("channels-classifier-")
    assert saved["reference"]["images"] == 256  # data.num_train of the run

    model, record = evaluate.load_sampler(str(checkpoint), "cpu")
    classifiers = Path(os.environ["GENLAB_DATA"]) / "classifiers"
    reader, _, _ = channel_reader(evaluate.load_data(record["data"]), classifiers, epochs=1)
    samples = model.sample(300, None, torch.Generator().manual_seed(0))  # genlab-eval's seed=0
    expected = mode_metrics(batched(reader.classes, samples))
    assert 1 < expected["modes"] < 300  # neither collapsed nor all distinct: a test that can fail
    assert saved["metrics"]["modes"] == expected["modes"]
    assert saved["metrics"]["reverse_kl"] == pytest.approx(expected["reverse_kl"], rel=1e-12)
    assert re.search(rf"^modes +{expected['modes']:.0f}$", out, re.MULTILINE), out
    assert re.search(rf"^reverse_kl +{expected['reverse_kl']:.4f}$", out, re.MULTILINE), out


def test_eval_defaults_on_stacked_data_and_modes_elsewhere():
    """Left out, n is the papers' 26,000 and modes joins the metrics on stacked MNIST;
    metrics=[modes] on other data stops in one line that names the fix."""
    args = evaluate.parse_args(["ckpt=x.ckpt"])
    evaluate.settle_defaults(args, stacked())
    assert args["n"] == 26_000 and args["metrics"] == ["fid", "kid", "prdc", "modes"]
    plain = evaluate.parse_args(["ckpt=x.ckpt"])
    evaluate.settle_defaults(plain, SimpleNamespace())
    assert plain["n"] == 50_000 and plain["metrics"] == ["fid", "kid", "prdc"]
    asked = evaluate.parse_args(["ckpt=x.ckpt", "n=100", "metrics=[fid,modes]"])
    with pytest.raises(ConfigError) as info:
        evaluate.settle_defaults(asked, SimpleNamespace())
    message = str(info.value)
    assert "\n" not in message and message.startswith("metrics=[modes] counts the digit triples")
    assert message.endswith("leave modes out, e.g. metrics=[fid,kid,prdc]")


def test_eval_refuses_inception_features_on_stacked_data(checkpoint, capsys):
    code, _, err = run_eval(capsys, f"ckpt={checkpoint}", "features=inception")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "features=inception: stacked MNIST is scored in" in err and "features=auto" in err
