"""What the tests share: running genlab-train and genlab-sample in or out of process, short
runs, reading a run's record back, watching for tensors read back to the host, and
test-only callbacks (importable by genlab-train subprocesses: tests/ is on their
PYTHONPATH, e.g. `+callbacks.stop._target_=helpers.StopAfterEpochs`)."""

import contextlib
import io
import os
import signal
import signal as signals
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils._python_dispatch import TorchDispatchMode

BIN = Path(sys.executable).parent
TESTS = Path(__file__).parent

# Short real runs: a few batches an epoch, no progress bar.
SHORT = [
    "trainer.enable_progress_bar=false",
    "trainer.limit_train_batches=8",
    "trainer.max_epochs=2",
]


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """The config `genlab-train OVERRIDES` would run, writing into `output_dir`."""
    from genlab.config import compose_run

    return compose_run(overrides, output_dir)


def cli(
    *args: str, cwd: Path, timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run a console script (`genlab-train`, `genlab-sample`) from this environment."""
    command = [str(BIN / args[0]), *args[1:]]
    environment = os.environ | {"PYTHONPATH": str(TESTS)} | (env or {})
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment
    )


def cli_in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`genlab-train ARGS` or `genlab-sample ARGS` through the real entry point (argument
    parsing, config composition, the one-line error handling), but in this process: a fresh
    interpreter spends 5 to 6 s importing torch and Lightning, which the many bad-input
    tests need not pay. Output and exit status come back as from `cli`."""
    from genlab import sample, train

    entry_points = {"genlab-train": train.main, "genlab-sample": lambda: sample.main(args[1:])}
    out, err = io.StringIO(), io.StringIO()
    argv, folder = sys.argv, os.getcwd()
    returncode = 0
    try:
        sys.argv = list(args)
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            entry_points[args[0]]()
    except SystemExit as exit_:
        returncode = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
        os.chdir(folder)
        GlobalHydra.instance().clear()
    return subprocess.CompletedProcess(list(args), returncode, out.getvalue(), err.getvalue())


def short_run(folder: Path, *overrides: str) -> Path:
    """`genlab-train OVERRIDES` for a few batches, no logger, into folder/run; returns the run folder."""
    run = folder / "run"
    result = cli(
        "genlab-train", *overrides, *SHORT, "logger=none", f"hydra.run.dir={run}", cwd=folder
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # no logger: the last line names the run folder, no TensorBoard line after it
    assert result.stdout.strip().splitlines()[-1] == f"Run folder: {run.resolve()}"
    return run


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error a console script printed: exit status 2, one line, no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def tb_run(output_dir: Path) -> Path:
    """A run's TensorBoard run folder, `<run>/tensorboard/<run name>/`."""
    (folder,) = [p for p in (Path(output_dir) / "tensorboard").iterdir() if p.is_dir()]
    return folder


def read_events(folder) -> EventAccumulator:
    """A TensorBoard run folder read back as TensorBoard reads it, every event kept."""
    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    return events


def final_state(output_dir: Path) -> dict[str, torch.Tensor]:
    """The weights in a run's last checkpoint."""
    checkpoint = torch.load(output_dir / "checkpoints" / "last.ckpt", weights_only=False)
    return checkpoint["state_dict"]


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


# what waits for a GPU: reading a number back (`item`, `float`, `bool`, `int`), and copying
# a tensor to the host (on a CPU run these dispatch nothing, so they are watched by name)
READ_OPS = frozenset({"aten._local_scalar_dense.default"})
HOST_COPIES = ("tolist", "numpy", "cpu")


class OpsSeen(TorchDispatchMode):
    """Records the aten operators run inside the block, and the calls of the Tensor methods
    that copy to the host (`Tensor.tolist`, ...). `reads` counts the entries that would make
    the host wait for a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []
        self.patched: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))

    def __enter__(self) -> "OpsSeen":
        for name in HOST_COPIES:
            method = getattr(torch.Tensor, name)

            def counted(tensor, *args, _name=name, _method=method, **kwargs):
                self.ops.append(f"Tensor.{_name}")
                return _method(tensor, *args, **kwargs)

            self.patched.append((name, name in torch.Tensor.__dict__, method))
            setattr(torch.Tensor, name, counted)
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        for name, own, method in self.patched:
            if own:
                setattr(torch.Tensor, name, method)
            else:
                delattr(torch.Tensor, name)
        self.patched = []
        return super().__exit__(*exc)

    @property
    def reads(self) -> int:
        return sum(op in READ_OPS or op.startswith("Tensor.") for op in self.ops)


# ---- test-only callbacks ----------------------------------------------------------------------


class DumpGeneratorWeights(L.Callback):
    """Every rank saves its generator's weights at the end of training to dirpath/rank<N>.pt."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.generator.state_dict().items()}
        torch.save(state, self.dirpath / f"rank{trainer.global_rank}.pt")


class StopAfterEpochs(L.Callback):
    """Ends training cleanly after `epochs` epochs, as if the run had been cut there."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class PoisonWeights(L.Callback):
    """Sets every generator (or decoder) weight to NaN at batch `batch` of epoch `epoch`."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            net = getattr(pl_module, "generator", None) or pl_module.decoder
            with torch.no_grad():
                for parameter in net.parameters():
                    parameter.fill_(float("nan"))


class InterruptAtBatch(L.Callback):
    """Presses Ctrl-C (sends SIGINT to its own process) before batch `batch` of epoch `epoch`."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGINT)


class SignalAt(L.Callback):
    """Sends a real signal to its own process at one point of training: `batch` (before
    batch `batch` of epoch `epoch` runs), `last_batch` (after the epoch's last batch), `eval`
    (at the epoch's end, before the evaluation and the checkpoints) or `next_epoch` (as
    epoch `epoch` + 1 starts). The handler runs where the signal lands, as it would for a
    signal from outside. `mid_batch`: between D's and G's updates of batch `batch`."""

    def __init__(self, point: str, epoch: int, signal: str = "SIGTERM", batch: int = 3) -> None:
        self.point = point
        self.epoch = epoch
        self.batch = batch
        self.signal = signal
        self.batch_idx = -1
        self.steps = 0

    def send(self, trainer: L.Trainer, point: str) -> None:
        if point == self.point and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), getattr(signals, self.signal))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.batch_idx, self.steps = batch_idx, 0
        if batch_idx == self.batch:
            self.send(trainer, "batch")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.steps += 1
        if self.batch_idx == self.batch and self.steps == 2:  # G's step, after D's
            self.send(trainer, "mid_batch")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx + 1 == trainer.num_training_batches:
            self.send(trainer, "last_batch")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.send(trainer, "eval")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch + 1 and self.point == "next_epoch":
            os.kill(os.getpid(), getattr(signals, self.signal))
