"""`genlab-train`: Hydra config -> datamodule, model, Trainer -> fit -> metrics.

genlab-train                                   # GAN on moons, CPU
genlab-train model=wgan_gp data=ring model.lr=1e-4
genlab-train -m model.lr=1e-4,1e-3 data.batch_size=50,250
"""

import contextlib
import difflib
import functools
import hashlib
import inspect
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, get_object, instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from genlab.callbacks.guard import CheckpointOnInterrupt
from genlab.callbacks.run_record import RunRecord, final_metrics, write_run_info
from genlab import speedups
from genlab.checkpoints import check_compatible, load_checkpoint
from genlab.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DivergenceError,
    require,
    user_error,
)

log = logging.getLogger("genlab.train")


@functools.lru_cache(maxsize=8)
def swept_keys(multirun_yaml: str) -> frozenset[str]:
    """The keys a multirun sweeps: command-line overrides with sweep syntax (`a=1,2`,
    `range(...)`, `choice(...)`, ...) and the sweeper's `params`, read from the sweep's
    multirun.yaml (Hydra writes it before launching the jobs)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(multirun_yaml)
    if not path.is_file():
        return frozenset()
    config = OmegaConf.load(path)
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
    name = ",".join(f"{key}={value}" for key, value in pairs)
    name = name.replace("/", "_").replace("\\", "_") or "defaults"
    if len(name) <= limit:
        return name
    return name[: limit - 9] + "~" + hashlib.sha1(name.encode()).hexdigest()[:8]


OmegaConf.register_new_resolver("genlab.job_name", job_name, replace=True)


def check_hardware(cfg: DictConfig) -> None:
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator not in ("gpu", "cuda"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            "no CUDA GPU is visible on this machine; use hardware=cpu (or hardware=ddp_cpu)"
        )
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision.startswith("bf16") and not gpu_has_bf16():
        # hardware=gpu asks for bf16 where the GPU has it (Ampere and newer); older GPUs
        # get float16 with loss scaling, which Lightning's manual optimization handles
        print(
            "genlab-train: note: this GPU has no bf16 arithmetic; training with "
            "trainer.precision=16-mixed instead (or set trainer.precision=32-true)",
            file=sys.stderr,
        )
        with open_dict(cfg):
            cfg.trainer.precision = "16-mixed"


def gpu_has_bf16() -> bool:
    """Native bf16 on the current GPU (emulated bf16 on older GPUs is slow)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before 2.4 has no including_emulation
        return torch.cuda.get_device_capability()[0] >= 8


def check_settings(node: Any, path: str) -> None:
    """Every key of a `_target_` config must be a parameter of its target, so that a typo
    (`model.lr_G` for `model.lr_g`) stops the run at once instead of being ignored or
    failing deep inside the target. Walks nested configs; targets that take **kwargs pass."""
    if isinstance(node, DictConfig):
        target = node.get("_target_") if "_target_" in node else None
        if target is not None:
            check_keys_of(str(target), [str(k) for k in node.keys()], path)
        for key in node.keys():
            if not str(key).startswith("_"):
                check_settings(node._get_node(key), f"{path}.{key}")


def check_keys_of(target: str, keys: list[str], path: str) -> None:
    try:
        known = accepted_settings(get_object(target))
    except (ValueError, TypeError, ImportError, AttributeError):
        return  # not introspectable: leave it to the target
    if known is None:  # takes any keyword
        return
    for key in keys:
        if key.startswith("_") or key in known or key in SPEED_KEYS:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        hint = (
            f"did you mean {path}.{close[0]}?"
            if close
            else f"drop it with ~{path}.{key} (its settings: {', '.join(known)})"
        )
        raise ConfigError(f"{path}.{key} is not a setting of {target.rsplit('.', 1)[-1]}; {hint}")


def accepted_settings(target: Any) -> list[str] | None:
    """The keyword arguments `target` accepts; for a genlab class whose `__init__` passes
    **kwargs on to its parent's, those of the parent too. None when anything goes."""
    owners = [c.__init__ for c in inspect.getmro(target)] if inspect.isclass(target) else [target]
    known: list[str] = []
    for function in owners:
        takes_any = False
        for name, parameter in inspect.signature(function).parameters.items():
            if parameter.kind is parameter.VAR_KEYWORD:
                takes_any = True
            elif name != "self" and parameter.kind is not parameter.VAR_POSITIONAL:
                known.append(name)
        if not takes_any:
            return list(dict.fromkeys(known))
        if not function.__module__.startswith("genlab."):
            return None  # others may pass **kwargs anywhere (DDPStrategy: to DDP)
    return None


def check_log_folders(loggers: list) -> None:
    """A logger folder that cannot be written fails now, with the fix, not after an epoch."""
    for logger in loggers:
        folder = getattr(logger, "save_dir", None) or getattr(logger, "root_dir", None)
        if not folder:
            continue
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder):
                pass
        except OSError as error:
            raise ConfigError(
                f"cannot write logs to {folder} ({error.strerror or error}); point "
                f"paths.output_dir (or hydra.run.dir) at a writable folder, or use logger=none"
            ) from None


def check_model_kind(model_cfg: DictConfig, datamodule: L.LightningDataModule) -> None:
    """Translation models need two image domains, the others one; say so before the model's
    config tries to read what the data does not have."""
    translates = hasattr(get_class(model_cfg._target_), "translate")
    two_domains = hasattr(datamodule, "shape_a")
    require(
        translates or not two_domains,
        "this data holds pairs of image domains, for model=pix2pix or model=cyclegan; "
        "a generative model needs one domain (e.g. data=mnist_mini)",
        DataError,
    )
    require(
        two_domains or not translates,
        "pix2pix and CycleGAN translate between two image domains: use data=digits_edges "
        "(paired), data=digits_inverted (unpaired) or a folder (data=paired_folder, "
        "data=unpaired_folder)",
        DataError,
    )


def check_model_fits_data(model: L.LightningModule, datamodule: L.LightningDataModule) -> None:
    """Fail before training when the model cannot learn this data."""
    if hasattr(model, "translate"):
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
    made = model.sample_shape()
    require(
        made == tuple(datamodule.shape),
        f"the model makes samples of shape {list(made)} but the data has {list(datamodule.shape)}; "
        f"leave the nets' in_shape/out_shape at '${{data.shape}}' or change data.image_size/channels",
    )


SPEED_KEYS = ("compile", "channels_last")


def instantiate_model(model_cfg: DictConfig | dict) -> tuple[L.LightningModule, dict[str, Any]]:
    """The model from its config, and the speed settings (`model.compile`,
    `model.channels_last`) that genlab-train applies to it rather than pass to it."""
    config = OmegaConf.create(model_cfg) if isinstance(model_cfg, dict) else model_cfg.copy()
    with open_dict(config):
        speed = {key: config.pop(key) for key in SPEED_KEYS if key in config}
    return instantiate(config, _convert_="all"), speed


def wants_channels_last(setting: Any, cfg: DictConfig, datamodule) -> bool:
    """model.channels_last: true, false, or auto (on for images on a GPU, where convolutions
    run faster in NHWC; on CPUs it rarely helps)."""
    if str(setting) != "auto":
        return bool(setting)
    on_gpu = str(cfg.trainer.get("accelerator", "cpu")) in ("gpu", "cuda")
    return on_gpu and len(datamodule.shape) == 3


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list) -> L.Trainer:
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
    quiet = None if trainer_cfg.get("profiler") else speedups.quiet_profiler()
    profiler = {} if quiet is None else {"profiler": quiet}
    return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False, **profiler)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group that is a dict of `_target_` configs."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def hydra_choices() -> dict[str, Any]:
    """The option chosen in each config group (`model: gan`, ...), when Hydra runs the app."""
    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def hparams(cfg: DictConfig, run_config: dict[str, Any]) -> dict[str, Any]:
    """The run's sweepable settings, for TensorBoard's HPARAMS tab."""
    params = {
        "model": run_config["model"],
        "data": run_config["data"],
        "trainer": {
            k: v
            for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items()
            if not isinstance(v, dict)
        },
        "seed": cfg.seed,
        "choice": {k: str(v) for k, v in hydra_choices().items() if not k.startswith("hydra")},
    }
    return _drop_private(params)


def _drop_private(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _drop_private(v) for k, v in tree.items() if not str(k).startswith("_")}
    return tree


def write_metrics(path: Path, status: str, metrics: dict[str, float], **extra: Any) -> None:
    payload = {
        "status": status,
        "metrics": {k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()},
    }
    path.write_text(json.dumps(payload | extra, indent=2) + "\n")


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


NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def skip_nvml_probe() -> bool:
    """Drop the NVML-based CUDA check that Lightning asks for on import, on a machine with no
    GPU; True when dropped.

    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 so that asking whether CUDA is there does
    not start the CUDA driver in a process that may fork later. With that set and no GPU,
    torch never caches the answer: every call loads the NVML library anew, and torch's
    optimizers ask on every `step()` (their CUDA-graph health check), which doubled the
    time of an Adam step on a small layer (bench/results.md). Without a GPU there is no
    driver state for a fork to inherit, so the plain check is as safe. With a GPU nothing
    changes: torch caches the answer once CUDA starts."""
    if os.environ.get(NVML_CHECK) != "1" or torch.cuda.is_available():
        return False
    del os.environ[NVML_CHECK]
    return True


def check_fresh_output(cfg: DictConfig, output_dir: Path) -> None:
    """Never overwrite a finished run: a rerun into the same folder must resume it."""
    if (output_dir / "metrics.json").is_file() and not cfg.get("ckpt_path"):
        raise ConfigError(
            f"{output_dir} already holds a finished run; choose a new hydra.run.dir "
            f"(hydra.sweep.dir for -m) or resume it with ckpt_path=..."
        )


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


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured model and return its final metrics."""
    started = time.time()
    resolve_resume(cfg)
    output_dir = Path(cfg.paths.output_dir)
    check_fresh_output(cfg, output_dir)
    check_hardware(cfg)
    share_resources(cfg)
    skip_nvml_probe()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    write_run_info(output_dir / "run_info.json")

    for group in ("model", "data", "trainer", "callbacks", "logger"):
        if cfg.get(group):
            check_settings(cfg[group], group)
    # Plain containers, not OmegaConf nodes: checkpoints must load with weights_only=True.
    datamodule: L.LightningDataModule = instantiate(cfg.data, _convert_="all")
    check_model_kind(cfg.model, datamodule)
    model, speed = instantiate_model(cfg.model)
    choices = hydra_choices()
    run_config = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "choices": {k: choices[k] for k in ("model", "data") if k in choices},
    }
    # Load the data now, so that a missing dataset fails before training starts.
    datamodule.setup("fit")
    check_model_fits_data(model, datamodule)
    channels_last = wants_channels_last(speed.get("channels_last", "auto"), cfg, datamodule)
    model.speed_up(bool(speed.get("compile", False)), channels_last)
    if cfg.get("ckpt_path"):
        check_compatible(load_checkpoint(cfg.ckpt_path), model, cfg.ckpt_path)

    callbacks = instantiate_group(cfg.get("callbacks"))
    callbacks = [*callbacks, RunRecord(run_config, hparams(cfg, run_config))]
    loggers = instantiate_group(cfg.get("logger"))
    check_log_folders(loggers)
    with speedups.applied(cfg.get("speedups", True), model):
        trainer = build_trainer(cfg, callbacks, loggers)
        return fit(cfg, trainer, model, datamodule, callbacks, output_dir, started)


def fit(cfg, trainer, model, datamodule, callbacks, output_dir, started) -> dict[str, float]:

    def record(status: str, **extra: Any) -> dict[str, float]:
        metrics = final_metrics(trainer)
        if trainer.is_global_zero:
            write_metrics(
                output_dir / "metrics.json",
                status,
                metrics,
                epochs=trainer.current_epoch,
                global_step=trainer.global_step,
                duration_s=round(time.time() - started, 2),
                threads=torch.get_num_threads(),
                **extra,
            )
        return metrics

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except DivergenceError as error:
        record("diverged", error=str(error))
        raise
    except (KeyboardInterrupt, SystemExit):
        # Ctrl-C (Lightning turns it into sys.exit) or SIGTERM (SIGTERMException)
        record("interrupted")
        saved = next((c.saved for c in callbacks if isinstance(c, CheckpointOnInterrupt)), None)
        where = f"checkpoint saved to {saved}" if saved else "no checkpoint saved"
        print(
            f"genlab-train: interrupted at epoch {trainer.current_epoch}, step "
            f"{trainer.global_step}; {where}; resume with: genlab-train "
            f"hydra.run.dir={output_dir} ckpt_path=last (and the same overrides)",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(143 if trainer.received_sigterm else 130)
    metrics = record("completed")
    if trainer.is_global_zero:
        print_summary(output_dir, metrics, trainer)
    return metrics


def print_summary(output_dir: Path, metrics: dict[str, float], trainer: L.Trainer) -> None:
    shown = {k: v for k, v in metrics.items() if k.startswith(("eval/", "ddp/"))} or metrics
    lines = [f"  {k:<20} {v:.4g}" for k, v in shown.items()]
    print("\nFinal metrics:\n" + "\n".join(lines), flush=True)
    print(f"Run folder: {output_dir.resolve()}", flush=True)
    if any(isinstance(lg, TensorBoardLogger) for lg in trainer.loggers):
        print(
            f"TensorBoard: tensorboard --logdir {output_dir.resolve()} --host 127.0.0.1", flush=True
        )


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a Hydra sweeper optimizes: `metrics[optimized_metric]`."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        message = f"optimized_metric={name} was not computed; choose one of {sorted(metrics)}"
        # only a sweeper that optimizes (Optuna) needs the value; a plain run just says so
        require(not optimizing_sweeper(), message)
        print(f"genlab-train: note: {message}", file=sys.stderr)
        return None
    return metrics[name]


def optimizing_sweeper() -> bool:
    """True inside a multirun whose sweeper optimizes the returned value (not a grid)."""
    if not in_multirun():
        return False
    target = str(HydraConfig.get().sweeper.get("_target_", ""))
    return "BasicSweeper" not in target


def compose_run(overrides: list[str], output_dir: Path) -> DictConfig:
    """The config `genlab-train OVERRIDES` would run, writing into `output_dir`, with Hydra's
    run state set as `train()` expects: for tests and benchmarks that call `train()` directly."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("genlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
        cfg.paths.output_dir = str(output_dir)
        cfg.trainer.enable_progress_bar = False
    HydraConfig.instance().set_config(cfg)
    return cfg


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return optimized_value(cfg, train(cfg))
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        message = str(error).splitlines()[0]
        if not in_multirun():
            print(f"genlab-train: error: {message}", file=sys.stderr, flush=True)
            sys.exit(2)
        # In a sweep, one bad job is recorded and the others go on.
        log.error("job failed: %s", message)
        record = Path(cfg.paths.output_dir) / "metrics.json"
        if not record.exists():  # never over another run's results
            write_metrics(record, "failed", {}, error=message)
        return float("nan")


if __name__ == "__main__":
    main()
