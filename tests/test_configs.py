"""Every option of every config group composes, and the model/data configs instantiate."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

import genlab
from genlab.build import check_model_kind, instantiate_model
from genlab.config import check_settings
from genlab.errors import ConfigError, DataError

from helpers import compose_train, write_png

CONF = Path(genlab.__file__).parent / "conf"
GROUPS = [
    "model",
    "data",
    "trainer",
    "hardware",
    "logger",
    "callbacks",
    "paths",
    "hydra",
    "experiment",
    "sweep",
    "debug",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


CASES = [(group, option) for group in GROUPS for option in options(group)]


def test_every_required_option_exists():
    assert {"gan", "wgan", "wgan_gp", "lsgan"} <= set(options("model"))
    assert {"moons", "ring", "grid"} <= set(options("data"))
    assert {"cpu", "gpu", "multi_gpu", "ddp_cpu"} <= set(options("hardware"))
    assert {"tensorboard", "csv", "none"} <= set(options("logger"))


SETTING_GROUPS = ["model", "data", "trainer", "callbacks", "logger"]


@pytest.mark.parametrize("group, option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_passes_the_settings_check(group, option, tmp_path):
    """Every option composes, is the one chosen, and every key of it is a setting of its
    target (the typo check must not reject a config genlab ships)."""
    cfg = compose_train([f"{group}={option}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    if group == "hydra":  # genlab's settings of Hydra itself
        assert cfg.hydra.job.chdir is False
        assert cfg.hydra.callbacks.report._target_ == "genlab.report.SweepReport"
    else:
        assert cfg.hydra.runtime.choices[group] == option
    for name in SETTING_GROUPS:
        if cfg.get(name):
            check_settings(cfg[name], name)


# every data option but those that repeat another's code path and shapes for the models:
# ring (grid's), mnist and fashion_mnist (mnist_mini's shapes, torchvision's loader tested
# in test_images.py); each of them composes in test_option_composes
MATRIX_DATA = [d for d in options("data") if d not in ("ring", "mnist", "fashion_mnist")]


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("data", MATRIX_DATA)
def test_model_and_data_instantiate(model, data, tmp_path):
    overrides = [f"model={model}", f"data={data}"]
    if model == "pixelcnn":  # sampling is pixel by pixel: a tiny net keeps it quick
        overrides += ["model.net.hidden=4", "model.net.num_blocks=0"]
    if model == "pixelrnn":
        overrides += ["model.net.hidden=4", "model.net.num_layers=1"]
    if data == "image_folder":
        folder = tmp_path / "images" / "only_class"
        folder.mkdir(parents=True)
        overrides.append(f"data.root={folder.parent}")
    if data == "paired_folder":
        for name in ("train", "val"):
            (tmp_path / "pairs" / name).mkdir(parents=True)
            write_png(tmp_path / "pairs" / name / "0.png", np.zeros((8, 16, 3)))
        overrides.append(f"data.root={tmp_path / 'pairs'}")
    if data == "unpaired_folder":
        for name in ("trainA", "trainB"):
            (tmp_path / "domains" / name).mkdir(parents=True)
            for i in range(2):
                write_png(tmp_path / "domains" / name / f"{i}.png", np.zeros((8, 8, 3)))
        overrides.append(f"data.root={tmp_path / 'domains'}")
    cfg = compose_train(overrides, tmp_path)
    datamodule = instantiate(cfg.data)
    if model == "cogan":  # a pair of images from noise, one in each of two domains
        if not hasattr(datamodule, "shape_a"):
            with pytest.raises(DataError, match="data=digits_inverted"):
                check_model_kind(cfg.model, datamodule)
            return
        a, b = instantiate_model(cfg.model)[0].sample_pairs(2)
        assert (a.shape[1:], b.shape[1:]) == (tuple(datamodule.shape_a), tuple(datamodule.shape))
        return
    translation = model in ("pix2pix", "cyclegan", "unit")
    if translation != hasattr(datamodule, "shape_a"):
        with pytest.raises(DataError, match="pix2pix"):
            check_model_kind(cfg.model, datamodule)
        return
    if translation:
        module = instantiate_model(cfg.model)[0]
        for direction in module.directions:
            images = datamodule.eval_set()[0 if direction == "ab" else 1][:2]
            out_shape = datamodule.shape if direction == "ab" else datamodule.shape_a
            assert module.translate(images, direction).shape == (len(images), *out_shape)
        assert module.out_shape == tuple(datamodule.shape)
        return
    if model in ("acgan", "tacgan") and len(datamodule.shape) == 1:
        with pytest.raises(InstantiationException, match="needs image data"):
            instantiate_model(cfg.model)[0]
        return
    if model == "dcgan" and len(datamodule.shape) == 1:
        with pytest.raises(InstantiationException, match="kind=dcgan makes convolutional nets"):
            instantiate_model(cfg.model)[0]
        return
    if model == "stackgan" and len(datamodule.shape) == 1:
        with pytest.raises(InstantiationException, match="StackGAN draws images"):
            instantiate_model(cfg.model)[0]
        return
    if model in ("pixelcnn", "pixelrnn") and len(datamodule.shape) == 1:
        with pytest.raises(InstantiationException, match="models images"):
            instantiate_model(cfg.model)[0]
        return
    if (
        model in ("cgan", "acgan", "tacgan", "cvae", "stackgan") and data == "image_folder"
    ):  # num_classes: null until set
        with pytest.raises(InstantiationException, match="no known classes"):
            instantiate_model(cfg.model)[0]
        return
    module = instantiate_model(cfg.model)[0]
    n = 2 if model in ("pixelcnn", "pixelrnn") else 7
    assert module.sample(n).shape == (n, *datamodule.shape)
    assert module.sample_shape() == tuple(datamodule.shape)


def optimizers(overrides: list[str], folder) -> list[torch.optim.Optimizer]:
    model = instantiate_model(compose_train(overrides, folder).model)[0]
    built = model.configure_optimizers()
    built = built[0] if isinstance(built, tuple) else built
    built = built["optimizer"] if isinstance(built, dict) else built
    return built if isinstance(built, list) else [built]


def test_the_model_gives_its_optimizers_their_learning_rates_and_betas(tmp_path):
    """model.lr, lr_g, lr_d and the betas reach the optimizers through the model, the one
    place they are checked, logged and used."""
    opt_g, opt_d = optimizers(["model.lr=1e-3"], tmp_path / "a")
    assert opt_g.defaults["lr"] == opt_d.defaults["lr"] == 1e-3
    assert opt_g.defaults["betas"] == (0.5, 0.999)
    opt_g, opt_d = optimizers(["model.lr=1e-3", "model.lr_d=4e-3", "model.betas_d=[0,0.9]"],
                              tmp_path / "b")  # fmt: skip
    assert opt_g.defaults["lr"] == 1e-3 and opt_d.defaults["lr"] == 4e-3
    assert opt_d.defaults["betas"] == (0.0, 0.9)
    opt_g, opt_d = optimizers(["model=wgan"], tmp_path / "c")
    assert isinstance(opt_g, torch.optim.RMSprop) and opt_d.defaults["lr"] == 5e-5
    (vae,) = optimizers(["model=vae", "data=mnist_mini", "model.lr=3e-4"], tmp_path / "d")
    assert vae.defaults["lr"] == 3e-4
    g, d = optimizers(["model=pix2pix", "data=digits_edges", "model.betas=[0.9,0.99]"],
                      tmp_path / "e")  # fmt: skip
    assert g.defaults["betas"] == d.defaults["betas"] == (0.9, 0.99)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+model.optimizer_g.lr=1e-3", "model.optimizer_g.lr would override model.lr_g; set "
         "model.lr_g instead and drop it with ~model.optimizer_g.lr"),
        ("+model.optimizer_d.betas=[0,0.9]", "model.optimizer_d.betas would override "
         "model.betas_d"),
        ("model.betas_g=[0.5]", "model.betas_g must be two numbers in [0, 1)"),
    ],
)  # fmt: skip
def test_an_optimizer_setting_with_two_sources_is_refused(override, message, tmp_path):
    with pytest.raises(InstantiationException, match=re.escape(message)):
        instantiate_model(compose_train([override], tmp_path).model)


def test_adam_is_fused_by_default_and_one_override_gives_torchs_choice(tmp_path):
    """Every Adam node asks for Adam's fused kernel (the CPU fast path); `fused=null` gives
    torch's own choice back, one optimizer at a time."""
    for model in ("gan", "dcgan", "wgan_gp", "cgan", "vae", "pixelcnn", "pix2pix"):
        data = {"gan": "moons", "pix2pix": "digits_edges"}.get(model, "mnist_mini")
        for optimizer in optimizers([f"model={model}", f"data={data}"], tmp_path / model):
            assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["fused"]
    opt_g, opt_d = optimizers(["model=gan", "data=moons", "model.optimizer_g.fused=null"],
                              tmp_path / "g")  # fmt: skip
    assert not opt_g.defaults["fused"] and opt_d.defaults["fused"]
    (vae,) = optimizers(["model=vae", "data=mnist_mini", "model.optimizer.fused=null"],
                        tmp_path / "v")  # fmt: skip
    assert not vae.defaults["fused"]


GAN_VARIANTS = ["cgan", "dcgan", "wgan", "wgan_gp", "lsgan", "hinge", "acgan", "tacgan"]


@pytest.mark.parametrize("variant", GAN_VARIANTS)
def test_every_gan_variant_inherits_every_setting_of_gan(variant, tmp_path):
    """The variants start from model/gan.yaml: the same settings, terms and net settings,
    only their values differ."""
    gan = compose_train(["model=gan"], tmp_path / "gan").model
    other = compose_train([f"model={variant}"], tmp_path / variant).model
    for node in ("", "terms", "generator", "discriminator"):
        mine = other if not node else other[node]
        theirs = gan if not node else gan[node]
        assert set(mine) == set(theirs), (node, set(mine) ^ set(theirs))


TUNING = sorted(p.stem for p in (CONF / "tuning").glob("*.yaml") if p.stem != "none")


@pytest.mark.parametrize("tuning", TUNING)
def test_every_tuning_file_applies_to_its_pair_and_tuning_none_leaves_it_out(tuning, tmp_path):
    from genlab.config import tuning_changes, tuning_file

    data, model = tuning.split("_", 1)
    pair = [f"data={data}", f"model={model}"]
    tuned = compose_train(pair, tmp_path / "tuned")
    assert tuning_file(tuned).name == f"{tuning}.yaml"
    changes = tuning_changes(tuned)
    assert changes and all(" -> " in change for change in changes)
    untuned = compose_train([*pair, "tuning=none"], tmp_path / "untuned")
    assert tuning_file(untuned) is None
    assert untuned.model != tuned.model
    # what it reports is what differs: each changed key holds its new value in the run
    for change in changes:
        key, values = change.split(" ", 1)
        if "(" not in values:
            assert values.endswith(f"-> {OmegaConf.select(tuned, key)}".replace("None", "null"))


def test_the_run_says_which_tuning_it_applied_and_what_it_changed(tmp_path, caplog):
    from genlab.config import report_tuning

    caplog.set_level("INFO", logger="genlab.train")
    report_tuning(compose_train(["data=ring", "model=wgan_gp"], tmp_path / "a"))
    (line,) = caplog.messages
    assert line.startswith("tuning: tuning/ring_wgan_gp.yaml applied (tuning=none")
    assert "model.lr 0.0001 -> 0.002" in line
    assert "model.terms.gradient_penalty.weight 10.0 -> 0.1" in line
    assert "model.lr_scheduler null -> CosineAnnealingLR(T_max=20)" in line
    report_tuning(compose_train(["data=ring", "model=wgan_gp", "tuning=none"], tmp_path / "b"))
    report_tuning(compose_train(["data=ring", "model=gan"], tmp_path / "c"))
    assert len(caplog.messages) == 1


def test_run_folders_are_told_apart_below_the_second(tmp_path):
    cfg = compose_train([], tmp_path)
    # outputs/<date>/<H-M-S-microseconds>: two runs started in the same second differ
    assert re.fullmatch(r"outputs/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}", cfg.hydra.run.dir)
    assert re.fullmatch(
        r"outputs/multirun/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}", cfg.hydra.sweep.dir
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+model.lr_G=1e-3", "model.lr_G is not a setting of GAN; did you mean model.lr_g?"),
        ("+model.generator.widht=32", "model.generator.widht is not a setting of generator"),
        ("+data.batchsize=32", "data.batchsize is not a setting of MoonsDataModule"),
        ("+trainer.max_epoch=3", "trainer.max_epoch is not a setting of Trainer; did you mean"),
        (
            "+callbacks.sample_plots.every_n_epoch=2",
            "did you mean callbacks.sample_plots.every_n_epochs",
        ),
    ],
)
def test_a_typo_in_a_key_is_an_error_that_names_the_fix(override, message, tmp_path):
    cfg = compose_train([override], tmp_path)
    with pytest.raises(ConfigError, match=re.escape(message)):
        for name in ("model", "data", "trainer", "callbacks"):
            check_settings(cfg[name], name)
