"""What a run inside a Hydra multirun needs: its folder's name, its share of the machine,
and the value it returns to the sweeper."""

import functools
import hashlib
import logging
import os
import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from genlab.errors import require


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def hydra_choices() -> dict[str, str]:
    """The option chosen in each config group (`model: gan`, ...), when Hydra runs the app."""
    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def swept_keys(multirun_yaml: str) -> frozenset[str]:
    """The keys a multirun sweeps: command-line overrides with sweep syntax (`a=1,2`,
    `range(...)`, `choice(...)`, ...) and the sweeper's `params`, read from the sweep's
    multirun.yaml (written before the jobs start); empty while it is not there."""
    path = Path(multirun_yaml)
    return read_swept_keys(str(path), path.stat().st_mtime_ns) if path.is_file() else frozenset()


@functools.lru_cache(maxsize=8)
def read_swept_keys(multirun_yaml: str, modified: int) -> frozenset[str]:
    config = OmegaConf.load(multirun_yaml)
    task = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    parsed = OverridesParser.create().parse_overrides(task)
    keys = {o.key_or_group for o in parsed if o.is_sweep_override()}
    return frozenset(keys | {str(k) for k in params})


def job_name(sweep_dir: str, overrides: list[str], limit: int = 120) -> str:
    """A sweep job's folder name: the values of the swept keys (`data.batch_size=50,model.lr=1e-4`),
    without path separators, at most `limit` characters; all its overrides when the sweep
    cannot be read."""
    pairs = sorted(
        (key.lstrip("+~"), value)
        for key, value in (str(o).split("=", 1) for o in overrides if "=" in str(o))
    )
    swept = swept_keys(str(Path(sweep_dir) / "multirun.yaml"))
    if swept:
        pairs = [(key, value) for key, value in pairs if key in swept]
    name = ",".join(f"{key}={short_number(value)}" for key, value in pairs)
    name = name.replace("/", "_").replace("\\", "_") or "defaults"
    if len(name) <= limit:
        return name
    return name[: limit - 9] + "~" + hashlib.sha1(name.encode()).hexdigest()[:8]


def short_number(value: str, digits: int = 4) -> str:
    """A real number in `digits` significant digits (an Optuna trial's lr=0.001570297088405539
    reads 0.00157); anything else as it is."""
    if not any(c in value for c in ".eE") or value.lower() in ("inf", "-inf", "nan"):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    short = f"{number:.{digits}g}"
    return value if float(short) == number else short  # 1e-4 stays as written


def run_name(output_dir: str) -> str:
    """What TensorBoard calls a run: its folder's name, or in a sweep the swept values."""
    if in_multirun():
        hydra = HydraConfig.get()
        return job_name(hydra.sweep.dir, list(hydra.overrides.task))
    return Path(output_dir).name


def register_resolvers() -> None:
    """`${genlab.job_name:...}`, which names sweep folders (conf/hydra/default.yaml), and
    `${genlab.interactive:}`, true when stdout is a terminal (the progress bar's default), and
    `${genlab.run_name:...}`, the run's name in TensorBoard."""
    OmegaConf.register_new_resolver("genlab.run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("genlab.job_name", job_name, replace=True)
    OmegaConf.register_new_resolver("genlab.interactive", sys.stdout.isatty, replace=True)


def parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine (joblib launcher), else 1."""
    if not in_multirun():
        return 1
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n_jobs = launcher.get("n_jobs") or -1
    cores = os.cpu_count() or 1
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)  # joblib: -1 = every core


def share_resources(cfg: DictConfig) -> None:
    """Threads and GPUs for this job: `num_threads` when set; under a parallel launcher a
    fair share of the cores, and one GPU per job (round robin) where there are several."""
    jobs = parallel_jobs()
    threads = cfg.get("num_threads") or (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0)
    if threads:
        torch.set_num_threads(int(threads))
    gpus = torch.cuda.device_count()
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if jobs > 1 and gpus > 1 and accelerator in ("gpu", "cuda", "auto"):
        with open_dict(cfg):
            cfg.trainer.devices = [HydraConfig.get().job.num % gpus]


def optimizing_sweeper() -> bool:
    """True inside a multirun whose sweeper optimizes the returned value (not a grid)."""
    if not in_multirun():
        return False
    target = str(HydraConfig.get().sweeper.get("_target_", ""))
    return "BasicSweeper" not in target


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a Hydra sweeper optimizes: `metrics[optimized_metric]`."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        message = f"optimized_metric={name} was not computed; choose one of {sorted(metrics)}"
        # only a sweeper that optimizes (Optuna) needs the value; a plain run just says so
        require(not optimizing_sweeper(), message)
        logging.getLogger("genlab.train").warning("%s", message)
        return None
    return metrics[name]
