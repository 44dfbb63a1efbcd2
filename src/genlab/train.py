"""`genlab-train`: Hydra config -> datamodule, model, Trainer -> fit -> metrics.

genlab-train                                   # GAN on moons, CPU
genlab-train model=wgan_gp data=ring model.lr=1e-4
genlab-train -m model.lr=1e-4,1e-3 data.batch_size=50,250

The recipe reads top to bottom: the run folder and its lock (`train`), a resume's own
config (`start_or_resume`), the checks, the objects, the record (`start`), the fit and its
outcome (`fit`). Each step lives in a module named after it: resume.py, locks.py, config.py
(compose, check), folders.py, build.py (data, model, callbacks, loggers, Trainer), runs.py
(the record), console.py (the console and train.log), sweeps.py (multirun jobs),
hardware.py (GPU, threads) and speedups.py.
"""

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, open_dict

from genlab import build, config, console, resume, runs, speedups, sweeps
from genlab.attempts import attempt_records, latest_record, recorded_overrides
from genlab.callbacks.guard import CheckpointOnInterrupt
from genlab.callbacks.run_record import RunRecord, final_metrics
from genlab.checkpoints import check_compatible, load_checkpoint, remove_torn_writes
from genlab.errors import DivergenceError, user_error
from genlab.folders import check_writable
from genlab.hardware import skip_nvml_probe
from genlab.locks import RunLock
from genlab.sweeps import hydra_choices

log = logging.getLogger("genlab.train")
sweeps.register_resolvers()  # before Hydra composes: sweep folders are named by a resolver


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the configured model and return its final metrics."""
    started = time.time()
    console.quiet_the_libraries()
    hydra_folder = Path(cfg.paths.output_dir)
    where = resume.locate(cfg)
    rank_zero = rank_zero_only.rank == 0  # DDP's other ranks re-run this: rank 0 keeps the record
    try:
        with RunLock(where.folder) if rank_zero else contextlib.nullcontext():
            return start_or_resume(cfg, where, rank_zero, started)
    finally:
        if where.folder.resolve() != hydra_folder.resolve():  # resumed in the checkpoint's run
            with contextlib.suppress(OSError):  # the folder Hydra made for this start, if empty
                hydra_folder.rmdir()


def start_or_resume(
    cfg: DictConfig, where: resume.Resume, rank_zero: bool, started: float
) -> dict[str, float]:
    """A resume takes the run's own config (or says there is nothing left to train); a new
    run never goes into another's folder. Errors after the record reach train.log too."""
    overrides = None  # a new run's: the command line's
    changes: list[str] = []  # a resume's, to the run's previous start
    if where.in_run:
        previous = recorded_overrides(latest_record(where.folder))
        cfg, overrides = resume.restore(cfg, where)
        changes = resume.changed(previous, overrides)
        done = resume.nothing_to_train(where, cfg)
        if done:
            print(f"genlab-train: {done}", file=sys.stderr, flush=True)
            return runs.recorded_metrics(where.folder)
    elif rank_zero:
        runs.check_fresh_output(where.folder)
    try:
        return start(cfg, where, overrides, changes, rank_zero, started)
    except Exception as error:
        found = user_error(error)
        if found is not None and console.run_log_open():  # the console gets it from main
            log.error("%s", str(found).splitlines()[0], extra={"file_only": True})
        raise
    finally:
        console.stop_run_log()


def start(
    cfg: DictConfig,
    where: resume.Resume,
    overrides: list[str] | None,
    changes: list[str],
    rank_zero: bool,
    started: float,
) -> dict[str, float]:
    """The checks, the record of this start, the objects, and the fit."""
    output_dir = where.folder
    if where.checkpoint and not where.in_run:
        with open_dict(cfg):
            cfg.ckpt_path = str(where.checkpoint)  # another run's weights, in a new folder
    config.validate(cfg)
    check_writable(output_dir)
    sweeps.share_resources(cfg)
    skip_nvml_probe()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build.data_and_model(cfg)
    if cfg.get("ckpt_path"):
        check_compatible(load_checkpoint(cfg.ckpt_path), model, cfg.ckpt_path)
    choices = runs.recorded_choices(output_dir) if where.in_run else hydra_choices()
    record = runs.run_config(cfg, choices)
    callbacks = [
        *build.instantiate_group(cfg.get("callbacks")),
        RunRecord(record, runs.hparams(cfg, record, choices)),
    ]
    loggers = build.loggers(cfg)

    # everything checked: from here on the run is recorded in its folder
    if rank_zero:
        runs.write_record(output_dir, cfg, overrides)
        console.start_run_log(output_dir)
        remove_torn_writes(output_dir / "checkpoints")
        if not where.in_run:
            config.report_tuning(cfg)
        console.log_start(cfg, output_dir, model, datamodule, choices, changes)
        runs.write_run_info(output_dir / "run_info.json")
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
        # rank 0's counts, where DDP ranks were spawned (callbacks/distributed.py)
        epochs = int(metrics.pop("progress/epochs", trainer.current_epoch))
        global_step = int(metrics.pop("progress/global_step", trainer.global_step))
        if trainer.is_global_zero:
            runs.write_metrics(
                output_dir / "metrics.json", status, metrics,
                epochs=epochs, global_step=global_step,
                duration_s=round(time.time() - started, 2), threads=torch.get_num_threads(),
                **extra,
            )  # fmt: skip
        return metrics

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    except DivergenceError as error:
        record("diverged", error=str(error))
        raise
    except (KeyboardInterrupt, SystemExit):
        # Ctrl-C (Lightning turns it into sys.exit) or SIGTERM (SIGTERMException)
        record("interrupted")
        on_interrupt = next(
            (c for c in trainer.callbacks if isinstance(c, CheckpointOnInterrupt)), None
        )
        runs.log_interrupted(output_dir, trainer, on_interrupt and on_interrupt.saved)
        ctrl_c = not trainer.received_sigterm or (on_interrupt and on_interrupt.stop_requested)
        sys.exit(130 if ctrl_c else 143)
    metrics = record("completed")
    if trainer.is_global_zero:
        runs.log_summary(output_dir, metrics, trainer)
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
            with contextlib.suppress(OSError):  # the folder Hydra made for a run that never began
                Path(cfg.paths.output_dir).rmdir()
            sys.exit(2)
        # In a sweep, one bad job is recorded and the others go on.
        log.error("job failed: %s", message)
        folder = Path(cfg.paths.output_dir)
        if not (folder / "metrics.json").exists():  # never over another run's results
            if not attempt_records(folder):
                runs.write_record(folder, cfg)  # so that the sweep's report lists the job
            runs.write_metrics(folder / "metrics.json", "failed", {}, error=message)
        return float("nan")


if __name__ == "__main__":
    main()
