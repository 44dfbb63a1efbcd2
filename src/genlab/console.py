"""What a run tells the console, and its `train.log`.

The console gets the start summary (run folder, model and nets, data, hardware, tuning),
warnings, a line per epoch with the losses and the evaluation (when no progress bar draws
them: stdout is not a terminal, or `trainer.enable_progress_bar=false`), the final metrics
and errors. `<run>/train.log` gets the same lines with times, from the moment the run's
record is written: a start that is refused never writes into a run's folder.

Noise from the libraries is quieted at its source: Lightning's "GPU available", tips and
notes (its rank-zero info logger), and warnings known to be harmless here.
"""

import logging
import re
import warnings
from pathlib import Path

import torch

from genlab.build import training_samples

RUN_LOG = "genlab-run-log"  # the name of the handler that writes train.log
PROGRAM = "genlab-train"

# Lightning's info lines (`GPU available: False`, a tip to install litlogger, "limit_train_batches
# was configured so 100% ...", "Restored all states"): genlab says what matters itself
QUIET_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
)
# harmless here: (message pattern, module that warns)
KNOWN_NOISE = (
    (r".*isinstance\(treespec, LeafSpec\)", r"lightning\..*"),  # Lightning on torch >= 2.14
    (r".*does not have many workers", r"lightning\..*"),  # in-memory loaders need none
    (r"Checkpoint directory .* exists and is not empty", r"lightning\..*"),  # resuming
)


class ConsoleFormatter(logging.Formatter):
    """Plain lines: the message alone for information, `genlab-train: warning: ...` and
    `genlab-train: error: ...` (first line only) otherwise; with times for the file."""

    def __init__(self, timestamps: bool = False) -> None:
        super().__init__("%(asctime)s %(message)s" if timestamps else "%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "py.warnings":  # "path.py:12: UserWarning: text\n  source line"
            message = re.sub(r"^\S+\.py:\d+: (\w+: )?", "", message.strip())
        if record.levelno >= logging.WARNING:
            label = "error" if record.levelno >= logging.ERROR else "warning"
            first = message.strip().splitlines()[0] if message.strip() else ""
            message = f"{PROGRAM}: {label}: {first}"
        record = logging.makeLogRecord(record.__dict__ | {"msg": message, "args": ()})
        return super().format(record)


class NotFileOnly(logging.Filter):
    """Console handlers leave out what is meant for train.log alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


class BelowWarning(logging.Filter):
    """stdout takes information; warnings and errors go to stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def quiet_the_libraries() -> None:
    """Route Lightning's loggers through genlab's handlers, at warning level, and turn
    warnings into log records (so they reach train.log), less the known noise."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):  # Lightning's own, added when nothing was set up
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                logger.removeHandler(handler)
        logger.propagate = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message, module in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, module=module)
    logging.captureWarnings(True)


def start_run_log(folder: Path) -> None:
    """From now on everything logged goes to `folder/train.log` too (appended: a resumed
    run's log continues the first start's)."""
    stop_run_log()
    handler = logging.FileHandler(folder / "train.log", encoding="utf-8")
    handler.set_name(RUN_LOG)
    handler.setFormatter(ConsoleFormatter(timestamps=True))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)


def stop_run_log() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == RUN_LOG]:
        root.removeHandler(handler)
        handler.close()


def run_log_open() -> bool:
    return any(h.get_name() == RUN_LOG for h in logging.getLogger().handlers)


def weights(module) -> str:
    count = sum(p.numel() for p in module.parameters())
    return f"{count / 1e6:.2f} M" if count >= 1e6 else f"{count / 1e3:.1f} K"


def log_start(
    cfg, folder: Path, model, datamodule, choices: dict[str, str], changes: list[str]
) -> None:
    """The start summary: where the run writes, what it trains on what, and where."""
    log = logging.getLogger("genlab.train")
    resuming = f"; resuming from {cfg.ckpt_path}" if cfg.get("ckpt_path") else ""
    if changes:
        resuming += f" with {' '.join(changes)}"
    log.info("run folder: %s%s", folder.resolve(), resuming)
    nets = ", ".join(
        f"{name} {type(net).__name__} ({weights(net)} weights)"
        for name, net in model.named_children()
        if next(net.parameters(), None) is not None
    )
    name = choices.get("model", type(model).__name__)
    log.info("model: %s: %s", name, nets or type(model).__name__)
    data = choices.get("data", type(datamodule).__name__)
    samples = training_samples(datamodule)
    shape = list(getattr(datamodule, "shape", []) or [])
    log.info(
        "data: %s: %s training samples of shape %s, batches of %s",
        data, samples, shape, datamodule.batch_size,
    )  # fmt: skip
    trainer = cfg.trainer
    log.info(
        "hardware: %s, %s device(s), precision %s, %d CPU threads",
        trainer.get("accelerator"), trainer.get("devices"), trainer.get("precision"),
        torch.get_num_threads(),
    )  # fmt: skip
