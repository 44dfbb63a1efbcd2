"""`genlab-train`: Hydra config -> datamodule, model, Trainer -> fit -> metrics.

genlab-train                                   # GAN on moons, CPU
genlab-train model=wgan_gp data=ring model.lr=1e-4
genlab-train -m model.lr=1e-4,1e-3 data.batch_size=50,250

The recipe reads top to bottom in `train`: the run folder, the checks, the objects, the fit
and the record. Each step lives in a module named after it: config.py (compose, check),
build.py (data, model, callbacks, loggers, Trainer), runs.py (run folder, record),
sweeps.py (multirun jobs), hardware.py (GPU, threads) and speedups.py.
"""

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig

from genlab import build, config, runs, speedups, sweeps
from genlab.callbacks.guard import CheckpointOnInterrupt
from genlab.callbacks.run_record import RunRecord, final_metrics
from genlab.checkpoints import check_compatible, load_checkpoint
from genlab.errors import DivergenceError, user_error
from genlab.hardware import skip_nvml_probe

log = logging.getLogger("genlab.train")
sweeps.register_resolvers()  # before Hydra composes: sweep folders are named by a resolver


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured model and return its final metrics."""
    started = time.time()
    runs.resolve_resume(cfg)
    output_dir = Path(cfg.paths.output_dir)
    runs.check_fresh_output(cfg, output_dir)
    config.validate(cfg)
    config.report_tuning(cfg)
    sweeps.share_resources(cfg)
    skip_nvml_probe()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    runs.write_run_info(output_dir / "run_info.json")

    datamodule, model = build.data_and_model(cfg)
    if cfg.get("ckpt_path"):
        check_compatible(load_checkpoint(cfg.ckpt_path), model, cfg.ckpt_path)
    record = runs.run_config(cfg)
    callbacks = [
        *build.instantiate_group(cfg.get("callbacks")),
        RunRecord(record, runs.hparams(cfg, record)),
    ]
    loggers = build.loggers(cfg)
    with speedups.applied(cfg.get("speedups", True)):
        trainer = build.trainer(cfg, callbacks, loggers)
        return fit(cfg, trainer, model, datamodule, output_dir, started)


def fit(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    output_dir: Path,
    started: float,
) -> dict[str, float]:
    """`trainer.fit`, and `metrics.json` however it ends: completed, diverged (the error
    goes on up) or interrupted (exit status 130 for Ctrl-C, 143 for SIGTERM)."""

    def record(status: str, **extra: Any) -> dict[str, float]:
        metrics = final_metrics(trainer)
        if trainer.is_global_zero:
            runs.write_metrics(
                output_dir / "metrics.json", status, metrics,
                epochs=trainer.current_epoch, global_step=trainer.global_step,
                duration_s=round(time.time() - started, 2), threads=torch.get_num_threads(),
                **extra,
            )  # fmt: skip
        return metrics

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except DivergenceError as error:
        record("diverged", error=str(error))
        raise
    except (KeyboardInterrupt, SystemExit):
        # Ctrl-C (Lightning turns it into sys.exit) or SIGTERM (SIGTERMException)
        record("interrupted")
        saved = next(
            (c.saved for c in trainer.callbacks if isinstance(c, CheckpointOnInterrupt)), None
        )
        runs.print_interrupted(output_dir, trainer, saved)
        sys.exit(143 if trainer.received_sigterm else 130)
    metrics = record("completed")
    if trainer.is_global_zero:
        runs.print_summary(output_dir, metrics, trainer)
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return sweeps.optimized_value(cfg, train(cfg))
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        message = str(error).splitlines()[0]
        if not sweeps.in_multirun():
            print(f"genlab-train: error: {message}", file=sys.stderr, flush=True)
            sys.exit(2)
        # In a sweep, one bad job is recorded and the others go on.
        log.error("job failed: %s", message)
        path = Path(cfg.paths.output_dir) / "metrics.json"
        if not path.exists():  # never over another run's results
            runs.write_metrics(path, "failed", {}, error=message)
        return float("nan")


if __name__ == "__main__":
    main()
