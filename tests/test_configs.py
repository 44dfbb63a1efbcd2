"""Every option of every config group composes, and the model/data configs instantiate."""

import re
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from test_translation import write_png

import genlab
from genlab.errors import ConfigError, DataError
from genlab.train import check_model_kind, check_settings, instantiate_model

from conftest import compose_train

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


@pytest.mark.parametrize("group, option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes(group, option, tmp_path):
    cfg = compose_train([f"{group}={option}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    assert cfg.model.lr > 0 and cfg.data.batch_size >= 1


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("data", options("data"))
def test_model_and_data_instantiate(model, data, tmp_path):
    overrides = [f"model={model}", f"data={data}"]
    if model == "pixelcnn":  # sampling is pixel by pixel: a tiny net keeps it quick
        overrides += ["model.net.hidden=4", "model.net.num_blocks=0"]
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
    translation = model in ("pix2pix", "cyclegan")
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
        assert module.sample_shape() == tuple(datamodule.shape)
        return
    if model in ("acgan", "tacgan") and len(datamodule.shape) == 1:
        with pytest.raises(InstantiationException, match="needs image data"):
            instantiate_model(cfg.model)[0]
        return
    if model == "pixelcnn" and len(datamodule.shape) == 1:
        with pytest.raises(InstantiationException, match="PixelCNN models images"):
            instantiate_model(cfg.model)[0]
        return
    if (
        model in ("cgan", "acgan", "tacgan", "cvae") and data == "image_folder"
    ):  # num_classes: null until set
        with pytest.raises(InstantiationException, match="no known classes"):
            instantiate_model(cfg.model)[0]
        return
    module = instantiate_model(cfg.model)[0]
    n = 2 if model == "pixelcnn" else 7
    assert module.sample(n).shape == (n, *datamodule.shape)
    assert module.sample_shape() == tuple(datamodule.shape)


def test_lr_g_and_lr_d_follow_lr_unless_overridden(tmp_path):
    cfg = compose_train(["model.lr=1e-3"], tmp_path)
    assert cfg.model.lr_g == cfg.model.lr_d == cfg.model.optimizer_g.lr == 1e-3
    cfg = compose_train(["model.lr=1e-3", "model.lr_d=4e-3"], tmp_path)
    assert cfg.model.optimizer_g.lr == 1e-3 and cfg.model.optimizer_d.lr == 4e-3


def test_run_folders_are_told_apart_below_the_second(tmp_path):
    cfg = compose_train([], tmp_path)
    # outputs/<date>/<H-M-S-microseconds>: two runs started in the same second differ
    assert re.fullmatch(r"outputs/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}", cfg.hydra.run.dir)
    assert re.fullmatch(
        r"outputs/multirun/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}", cfg.hydra.sweep.dir
    )


SETTING_GROUPS = ["model", "data", "trainer", "hardware", "logger", "callbacks", "experiment"]
SETTING_CASES = [(g, o) for g in SETTING_GROUPS for o in options(g)]


@pytest.mark.parametrize("group, option", SETTING_CASES, ids=[f"{g}={o}" for g, o in SETTING_CASES])
def test_every_shipped_config_passes_the_settings_check(group, option, tmp_path):
    """The typo check must not reject a config genlab ships."""
    cfg = compose_train([f"{group}={option}"], tmp_path)
    for name in ("model", "data", "trainer", "callbacks", "logger"):
        if cfg.get(name):
            check_settings(cfg[name], name)


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
