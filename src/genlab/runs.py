"""A run's folder and its record: which folder a run (or a resume) writes into, what produced
it (`run_info.json`), how it ended (`metrics.json`), and what it tells the console."""

import json
import logging
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from genlab.errors import CheckpointError, ConfigError, require
from genlab.sweeps import hydra_choices

log = logging.getLogger(__name__)


def resolve_resume(cfg: DictConfig) -> None:
    """`ckpt_path=last` means this run folder's checkpoints/last.ckpt. A checkpoint inside
    another run's `checkpoints/` resumes that run in its own folder: same TensorBoard run,
    same samples/ and metrics.json."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path:
        return
    output_dir = Path(cfg.paths.output_dir)
    if str(ckpt_path) == "last":
        path = output_dir / "checkpoints" / "last.ckpt"
        require(
            path.is_file(),
            f"ckpt_path=last found no {path}; resume a run in its folder with "
            f"hydra.run.dir=<run folder> ckpt_path=last, or pass the .ckpt file",
            CheckpointError,
        )
    else:
        path = Path(ckpt_path)
    run = path.resolve().parent.parent
    with open_dict(cfg):
        cfg.ckpt_path = str(path)
        if path.parent.name == "checkpoints" and (run / ".hydra").is_dir():
            if run != output_dir.resolve():
                log.info("resuming %s in its own folder %s", path, run)
            cfg.paths.output_dir = str(run)


def check_fresh_output(cfg: DictConfig, output_dir: Path) -> None:
    """Never overwrite a finished run: a rerun into the same folder must resume it."""
    if (output_dir / "metrics.json").is_file() and not cfg.get("ckpt_path"):
        raise ConfigError(
            f"{output_dir} already holds a finished run; choose a new hydra.run.dir "
            f"(hydra.sweep.dir for -m) or resume it with ckpt_path=..."
        )


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """What checkpoints keep of the config (plain containers, so that they load with
    weights_only=True): the resolved model and data, and the choices that made them."""
    choices = hydra_choices()
    return {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "choices": {k: choices[k] for k in ("model", "data") if k in choices},
    }


def hparams(cfg: DictConfig, config: dict[str, Any]) -> dict[str, Any]:
    """The run's sweepable settings, for TensorBoard's HPARAMS tab."""
    params = {
        "model": config["model"],
        "data": config["data"],
        "trainer": {
            k: v
            for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items()
            if not isinstance(v, dict)
        },
        "seed": cfg.seed,
        "choice": {k: str(v) for k, v in hydra_choices().items() if not k.startswith("hydra")},
    }
    return drop_private(params)


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


def print_summary(output_dir: Path, metrics: dict[str, float], trainer: L.Trainer) -> None:
    """The final metrics, the run folder and how to open TensorBoard on it."""
    shown = {k: v for k, v in metrics.items() if k.startswith(("eval/", "ddp/"))} or metrics
    lines = [f"  {k:<20} {v:.4g}" for k, v in shown.items()]
    print("\nFinal metrics:\n" + "\n".join(lines), flush=True)
    print(f"Run folder: {output_dir.resolve()}", flush=True)
    if any(isinstance(lg, TensorBoardLogger) for lg in trainer.loggers):
        print(
            f"TensorBoard: tensorboard --logdir {output_dir.resolve()} --host 127.0.0.1", flush=True
        )


def print_interrupted(output_dir: Path, trainer: L.Trainer, saved: Path | None) -> None:
    where = f"checkpoint saved to {saved}" if saved else "no checkpoint saved"
    print(
        f"genlab-train: interrupted at epoch {trainer.current_epoch}, step "
        f"{trainer.global_step}; {where}; resume with: genlab-train "
        f"hydra.run.dir={output_dir} ckpt_path=last (and the same overrides)",
        file=sys.stderr,
        flush=True,
    )
