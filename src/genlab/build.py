"""From a run's config to objects: the data, the model, the callbacks, the loggers and the
Trainer, each checked against the others before training starts."""

import importlib.util
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from genlab.checkpoints import AtomicCheckpointIO
from genlab.config import SPEED_KEYS
from genlab.contract import PairSampler, Sampler, Translator, draws_pairs, translates
from genlab.errors import ConfigError, DataError, require
from genlab.folders import unwritable
from genlab.hardware import wants_channels_last
from genlab.sweeps import in_multirun


def instantiate_model(model_cfg: DictConfig | dict) -> tuple[L.LightningModule, dict[str, Any]]:
    """The model from its config, and the speed settings (`model.compile`,
    `model.channels_last`) that genlab-train applies to it rather than pass to it."""
    config = OmegaConf.create(model_cfg) if isinstance(model_cfg, dict) else model_cfg.copy()
    with open_dict(config):
        speed = {key: config.pop(key) for key in SPEED_KEYS if key in config}
    return instantiate(config, _convert_="all"), speed


def data_and_model(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule]:
    """The datamodule (loaded, so that a missing dataset fails now) and the model, checked
    against each other, with the speed settings applied."""
    # Plain containers, not OmegaConf nodes: checkpoints must load with weights_only=True.
    datamodule: L.LightningDataModule = instantiate(cfg.data, _convert_="all")
    check_model_kind(cfg.model, datamodule)
    datamodule.setup("fit")
    check_batch_size(datamodule, processes(cfg.trainer))
    model, speed = instantiate_model(cfg.model)
    check_model_fits_data(model, datamodule)
    channels_last = wants_channels_last(speed.get("channels_last", "auto"), cfg, datamodule.shape)
    model.speed_up(bool(speed.get("compile", False)), channels_last)
    return datamodule, model


def processes(trainer: DictConfig) -> int:
    """How many training processes the trainer config asks for (1 when it cannot tell yet:
    `devices=auto` or `-1` are counted by Lightning)."""
    devices = trainer.get("devices", 1)
    count = len(devices) if isinstance(devices, (list, ListConfig)) else devices
    count = count if isinstance(count, int) and count > 0 else 1
    return count * max(1, int(trainer.get("num_nodes") or 1))


def training_samples(datamodule: L.LightningDataModule) -> int:
    """The training set's size (of its smaller domain, for unpaired domains)."""
    return min(len(t) for t in datamodule.train_set)


def check_batch_size(datamodule: L.LightningDataModule, world_size: int) -> None:
    """A batch must fit in each process's share of the training set (the loaders drop the
    last incomplete batch): said now, before a model or a log file exists."""
    per_process = training_samples(datamodule) // world_size
    require(
        datamodule.batch_size <= per_process,
        f"data.batch_size={datamodule.batch_size} is larger than the {per_process} training "
        f"samples each process gets; use a smaller data.batch_size",
    )


def check_model_kind(model_cfg: DictConfig, datamodule: L.LightningDataModule) -> None:
    """Translation models need two image domains, the others one; say so before the model's
    config tries to read what the data does not have."""
    model_class = get_class(model_cfg._target_)
    two_domains = hasattr(datamodule, "shape_a")
    if draws_pairs(model_class):  # CoGAN: a pair of images, one in each domain, from noise
        require(
            two_domains,
            "CoGAN learns two image domains from unpaired images of each: use "
            "data=digits_inverted or data=unpaired_folder",
            DataError,
        )
        return
    translator = translates(model_class)
    require(
        translator or not two_domains,
        "this data holds pairs of image domains, for model=pix2pix, model=cyclegan or "
        "model=unit; a generative model needs one domain (e.g. data=mnist_mini)",
        DataError,
    )
    require(
        two_domains or not translator,
        "translation models (pix2pix, CycleGAN, UNIT) need two image domains: use data=digits_edges "
        "(paired), data=digits_inverted (unpaired) or a folder (data=paired_folder, "
        "data=unpaired_folder)",
        DataError,
    )


def check_model_fits_data(model: L.LightningModule, datamodule: L.LightningDataModule) -> None:
    """Fail before training when the model cannot learn this data."""
    pack = getattr(model, "pack", 1)
    require(
        datamodule.batch_size % pack == 0,
        f"data.batch_size={datamodule.batch_size} is not a multiple of model.pack={pack}: D "
        f"judges packs of {pack} samples; use data.batch_size={datamodule.batch_size // pack * pack or pack}",
    )
    if isinstance(model, Translator):
        require(
            model.in_shape == tuple(datamodule.shape_a),
            f"the model takes inputs of shape {list(model.in_shape)} but domain A holds "
            f"{list(datamodule.shape_a)}; leave model.in_shape at '${{data.shape_a}}'",
        )
    if model.conditional or model.num_classes is None:
        require(
            datamodule.labelled,
            "this model is class-conditional but the data has no labels; use a labelled dataset "
            "(e.g. data=mnist_mini) or an unconditional model (e.g. model=dcgan)",
            DataError,
        )
        require(
            model.num_classes == datamodule.num_classes,
            f"the model expects {model.num_classes} classes but the data has {datamodule.num_classes}; "
            f"set model.num_classes='${{data.num_classes}}'",
        )
    if isinstance(model, PairSampler):
        made = tuple(tuple(images.shape[1:]) for images in model.sample_pairs(2))
        held = (tuple(datamodule.shape_a), tuple(datamodule.shape))
        require(
            made == held,
            f"the model makes pairs of shapes {[list(s) for s in made]} but the domains hold "
            f"{[list(s) for s in held]}; leave the nets' shape_a/shape_b at '${{data.shape_a}}' "
            f"and '${{data.shape}}'",
        )
        return
    made = model.sample_shape() if isinstance(model, Sampler) else model.out_shape
    require(
        made == tuple(datamodule.shape),
        f"the model makes samples of shape {list(made)} but the data has {list(datamodule.shape)}; "
        f"leave the nets' in_shape/out_shape at '${{data.shape}}' or change data.image_size/channels",
    )


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group that is a dict of `_target_` configs."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


# the trackers that come with an extra of genlab's: logger class -> package and extra name
TRACKER_EXTRAS = {"MLFlowLogger": "mlflow", "WandbLogger": "wandb"}


def loggers(cfg: DictConfig) -> list[Any]:
    """The configured loggers, their folders checked writable now rather than after an epoch."""
    for name, entry in (cfg.get("logger") or {}).items():
        extra = TRACKER_EXTRAS.get(str((entry or {}).get("_target_", "")).rsplit(".", 1)[-1])
        require(
            extra is None or importlib.util.find_spec(extra) is not None,
            f"logger={name} needs the {extra} package: pip install 'genlab[{extra}]' "
            f"(make install has it), or use logger=tensorboard",
        )
    built = instantiate_group(cfg.get("logger"))
    for logger in built:
        folder = getattr(logger, "save_dir", None) or getattr(logger, "root_dir", None)
        if not folder:
            continue
        blocked = unwritable(Path(folder))  # checked without creating anything yet
        if blocked is not None:
            raise ConfigError(
                f"cannot write logs to {folder} ({blocked} is read-only or not a folder); "
                f"point paths.output_dir (or hydra.run.dir) at a writable folder, or use "
                f"logger=none"
            )
    return built


def trainer(cfg: DictConfig, callbacks: list, loggers: list) -> L.Trainer:
    """Lightning's Trainer from `cfg.trainer` (and the hardware group merged into it)."""
    trainer_cfg = cfg.trainer
    strategy = trainer_cfg.get("strategy")
    if (
        in_multirun()
        and isinstance(strategy, DictConfig)
        and strategy.get("_target_", "").endswith("DDPStrategy")
    ):
        # Lightning's default DDP launcher re-runs the command line in each process; inside a
        # Hydra multirun that would start a new sweep per rank. Spawn the ranks instead.
        trainer_cfg = trainer_cfg.copy()
        with open_dict(trainer_cfg):
            trainer_cfg.strategy.start_method = "spawn"
    if not trainer_cfg.get("enable_progress_bar", True):
        # trainer.enable_progress_bar=false wins over the progress bar of callbacks/
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    # checkpoints written atomically beside their final place, and read with weights_only=True
    return instantiate(
        trainer_cfg, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
