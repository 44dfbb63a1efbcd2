"""Shared fixtures: compose the real configs into a tmp_path, run genlab-train in or out of process."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from torch.utils._python_dispatch import TorchDispatchMode

BIN = Path(sys.executable).parent
TESTS = Path(__file__).parent

# One data folder for the whole session (in-process runs and subprocesses alike), so that
# the digit classifier behind the image metrics is trained once per dataset, not per test.
os.environ.setdefault("GENLAB_DATA", tempfile.mkdtemp(prefix="genlab-data-"))


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """The config `genlab-train OVERRIDES` would run, writing into `output_dir`."""
    from genlab.train import compose_run

    return compose_run(overrides, output_dir)


@pytest.fixture
def run_train(tmp_path):
    """Train in-process: run_train(["model=wgan", "debug=fdr"]) -> (metrics, output_dir)."""
    from genlab.train import train

    def _run(overrides: list[str], name: str = "run") -> tuple[dict, Path]:
        output_dir = tmp_path / name
        output_dir.mkdir(parents=True, exist_ok=True)
        cfg = compose_train(overrides, output_dir)
        return train(cfg), output_dir

    yield _run
    GlobalHydra.instance().clear()


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
    import contextlib
    import io

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


# Short real runs: a few batches an epoch, no progress bar.
SHORT = [
    "trainer.enable_progress_bar=false",
    "trainer.limit_train_batches=8",
    "trainer.max_epochs=2",
]


def short_run(folder: Path, *overrides: str) -> Path:
    """`genlab-train OVERRIDES` for a few batches, no logger, into folder/run; returns the run folder."""
    run = folder / "run"
    result = cli(
        "genlab-train", *overrides, *SHORT, "logger=none", f"hydra.run.dir={run}", cwd=folder
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        result.stdout.strip().splitlines()[-1].startswith("Run folder:")
    )  # no logger: no TensorBoard line
    return run


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error a console script printed: exit status 2, one line, no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


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
