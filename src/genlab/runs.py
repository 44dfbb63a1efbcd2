"""A run's folder and its record: which folder a run (or a resume) writes into, what produced
it (`run_info.json`), how it ended (`metrics.json`), and what it tells the console."""

import json
import logging
import math
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from genlab.attempts import RECORD, attempt_records, first_record
from genlab.errors import ConfigError

log = logging.getLogger("genlab.train")


def write_record(folder: Path, cfg: DictConfig, overrides: list[str] | None = None) -> Path:
    """Record this start as Hydra itself would: config.yaml, the overrides that compose it
    (overrides.yaml; a resume's are the run's own with its allowed changes) and Hydra's
    settings with the command line as typed (hydra.yaml), in `.hydra/` for the first start
    and `.hydra/attempt-N/` for each later one. Nothing earlier is rewritten; the
    metrics.json that the previous start ended with is kept in that start's record."""
    earlier = attempt_records(folder)
    record = (
        first_record(folder)
        if not earlier
        else first_record(folder) / f"attempt-{len(earlier) + 1}"
    )
    previous_metrics = folder / "metrics.json"
    if earlier and previous_metrics.is_file() and not (earlier[-1] / "metrics.json").exists():
        shutil.copy2(previous_metrics, earlier[-1] / "metrics.json")
    record.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, record / "config.yaml")
    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        OmegaConf.save(OmegaConf.create({"hydra": hydra}), record / "hydra.yaml")
        typed = list(hydra.overrides.task)
    else:
        typed = []
    OmegaConf.save(
        OmegaConf.create(typed if overrides is None else overrides), record / "overrides.yaml"
    )
    return record


def check_fresh_output(folder: Path) -> None:
    """A new run never writes into another run's folder: a rerun must resume it."""
    taken = [name for name in (RECORD, "metrics.json", "checkpoints") if (folder / name).exists()]
    if taken:
        raise ConfigError(
            f"{folder} already holds a run ({taken[0]}); resume it with "
            f"hydra.run.dir={folder} ckpt_path=last, or choose a new hydra.run.dir "
            f"(hydra.sweep.dir for -m)"
        )


def recorded_choices(folder: Path) -> dict[str, str]:
    """The option chosen in each config group at the run's first start (for a resume,
    whose command line need not repeat them)."""
    path = first_record(folder) / "hydra.yaml"
    if not path.is_file():
        return {}
    choices = OmegaConf.select(OmegaConf.load(path), "hydra.runtime.choices", default=None)
    return {str(k): str(v) for k, v in (choices or {}).items()}


def run_config(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    """What checkpoints keep of the config (plain containers, so that they load with
    weights_only=True): the resolved model and data, and the choices that made them."""
    return {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "choices": {k: choices[k] for k in ("model", "data") if k in choices},
    }


def hparams(cfg: DictConfig, config: dict[str, Any], choices: dict[str, str]) -> dict[str, Any]:
    """The run's settings for TensorBoard's HPARAMS tab (and the other trackers), flat: the
    ones runs are compared by (Model, Data, LR, Batch size, Seed), then every model, data and
    trainer setting and the other config groups' options."""
    model, data = drop_private(config["model"]), drop_private(config["data"])
    # capitalised: TensorBoard sorts the columns by name (after those that differ between
    # runs), and capitals sort before the lower-case groups
    first = {
        "Model": choices.get("model", str(model.get("_target_", "")).rsplit(".", 1)[-1]),
        "Data": choices.get("data", str(data.get("_target_", "")).rsplit(".", 1)[-1]),
        "LR": model.get("lr"),
        "Batch size": data.get("batch_size"),
        "Seed": cfg.seed,
    }
    trainer = {
        k: v
        for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items()
        if not isinstance(v, dict) and not str(k).startswith("_")
    }
    others = {
        f"choice/{k}": v
        for k, v in choices.items()
        if not k.startswith("hydra") and k not in ("model", "data") and v not in (None, "None")
    }
    flat = {k: v for k, v in first.items() if v is not None}
    for group, settings in (("model", model), ("data", data), ("trainer", trainer)):
        flat |= {f"{group}/{k}": v for k, v in flatten(settings).items()}
    return flat | others


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}/")
        else:
            flat[name] = value
    return flat


def drop_private(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: drop_private(v) for k, v in tree.items() if not str(k).startswith("_")}
    return tree


def write_metrics(path: Path, status: str, metrics: dict[str, float], **extra: Any) -> None:
    """`metrics.json`: how the run ended, its final metrics (non-finite ones as text)."""
    payload = {
        "status": status,
        "metrics": {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()},
    }
    path.write_text(json.dumps(payload | extra, indent=2) + "\n")


def recorded_metrics(folder: Path) -> dict[str, float]:
    """The numeric final metrics in a run's metrics.json."""
    record = json.loads((folder / "metrics.json").read_text())
    return {k: v for k, v in record.get("metrics", {}).items() if isinstance(v, (int, float))}


def git_state(folder: Path) -> dict[str, Any]:
    """The commit of the git checkout holding `folder`, and whether it has local changes."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10
        )
        if result.returncode:
            raise OSError(result.stderr.strip())
        return result.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("genlab", "torch", "torchvision", "lightning", "hydra-core", "omegaconf"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return found


def write_run_info(path: Path) -> None:
    """`run_info.json`: what produced the run (the config is in .hydra/): the genlab
    source's git commit with a dirty flag, the package versions and the machine."""
    info = {
        "git": git_state(Path(__file__).resolve().parent),
        "versions": versions(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2) + "\n")


def log_summary(output_dir: Path, metrics: dict[str, float], trainer: L.Trainer) -> None:
    """The final metrics, the run folder and how to open TensorBoard on it."""
    shown = {k: v for k, v in metrics.items() if k.startswith(("eval/", "ddp/"))} or metrics
    log.info("\nFinal metrics:\n%s", "\n".join(f"  {k:<20} {v:.4g}" for k, v in shown.items()))
    warning = collapse_warning(metrics)
    if warning:
        log.warning(warning)
    log.info("Run folder: %s", output_dir.resolve())
    if any(isinstance(lg, TensorBoardLogger) for lg in trainer.loggers):
        log.info(
            "TensorBoard: tensorboard --logdir %s --host 127.0.0.1",
            output_dir.resolve() / "tensorboard",
        )


def collapse_warning(metrics: dict[str, float]) -> str | None:
    """What to say when no sample came near any of the data's known modes (ring, grid)."""
    if metrics.get("eval/modes", 1) > 0 or "eval/hq" not in metrics:
        return None
    return (
        "no generated sample lies within 3 std of any of the data's modes (eval/modes 0, "
        "eval/hq 0): G has not found the data; train longer, or start from a recipe "
        "(experiment=wgan_gp_ring, experiment=wgan_gp_grid)"
    )


def log_interrupted(output_dir: Path, trainer: L.Trainer, saved: Path | None) -> None:
    where = f"checkpoint saved to {saved}" if saved else "no checkpoint saved"
    log.warning(
        "interrupted at epoch %d, step %d; %s; resume with: genlab-train hydra.run.dir=%s "
        "ckpt_path=last",
        trainer.current_epoch, trainer.global_step, where, output_dir,
    )  # fmt: skip
