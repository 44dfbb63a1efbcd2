"""A run's record can be trusted: a refused start touches nothing, a resume carries the run
on from its own config and only appends to its record, one process per run folder,
checkpoints written atomically and loaded without running anything inside them, and a
real signal at any point of training resumes bit for bit."""

import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from genlab.checkpoints import AtomicCheckpointIO, read_checkpoint, remove_torn_writes
from genlab.errors import CheckpointError, ConfigError
from genlab.locks import RunLock

from helpers import cli_in_process, final_state, one_line_error

SHORT = [
    "trainer.enable_progress_bar=false", "trainer.limit_train_batches=4",
    "callbacks.sample_quality.num_samples=200", "logger=none", "num_threads=1",
]  # fmt: skip


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a digest of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def train(tmp_path: Path, run: Path, *overrides: str):
    return cli_in_process("genlab-train", *SHORT, f"hydra.run.dir={run}", *overrides, cwd=tmp_path)


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory) -> Path:
    """A finished 1-epoch WGAN-GP run on the ring (not the default data)."""
    folder = tmp_path_factory.mktemp("ring")
    run = folder / "run"
    result = train(folder, run, "model=wgan_gp", "data=ring", "trainer.max_epochs=1")
    assert result.returncode == 0, result.stderr[-2000:]
    return run


def test_a_refused_start_leaves_the_finished_run_as_it_was(tmp_path, ring_run):
    before = snapshot(ring_run)
    result = train(tmp_path, ring_run, "model.lr=0.5")
    assert "already holds a run" in one_line_error(result)
    assert "ckpt_path=last" in result.stderr
    assert snapshot(ring_run) == before


def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path, ring_run):
    before = snapshot(ring_run)
    result = train(tmp_path, ring_run, "ckpt_path=last")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "has finished at its 1 epochs" in result.stderr
    assert "larger trainer.max_epochs" in result.stderr
    assert snapshot(ring_run) == before
    assert json.loads((ring_run / "metrics.json").read_text())["metrics"]["eval/fd"] > 0


def test_an_override_that_changes_the_trained_model_is_refused(tmp_path, ring_run):
    before = snapshot(ring_run)
    for conflict in ("data=moons", "model.latent_dim=3", "seed=7"):
        line = one_line_error(train(tmp_path, ring_run, "ckpt_path=last", conflict))
        assert line.startswith(f"genlab-train: error: {conflict} would change what"), line
        assert "data=ring" in line  # names what the run started with
    assert snapshot(ring_run) == before


def test_a_resume_trains_on_the_runs_own_data_and_appends_to_its_record(tmp_path, ring_run):
    run = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(ring_run), str(run)], check=True)
    first = snapshot(run / ".hydra")
    first_metrics = (run / "metrics.json").read_text()
    # no data=ring, no model=wgan_gp: the run's own record says what it trained on
    result = train(tmp_path, run, "ckpt_path=last", "trainer.max_epochs=2")
    assert result.returncode == 0, result.stderr[-2000:]
    for name, digest in first.items():  # nothing of the first start rewritten
        assert snapshot(run / ".hydra")[name] == digest
    assert (run / ".hydra" / "metrics.json").read_text() == first_metrics
    attempt = run / ".hydra" / "attempt-2"
    config = yaml.safe_load((attempt / "config.yaml").read_text())
    assert config["data"]["_target_"] == "genlab.data.toy2d.RingDataModule"
    assert config["model"]["terms"]["gradient_penalty"]["weight"] > 0  # still WGAN-GP
    assert config["trainer"]["max_epochs"] == 2
    overrides = yaml.safe_load((attempt / "overrides.yaml").read_text())
    assert "data=ring" in overrides and "trainer.max_epochs=2" in overrides
    typed = yaml.safe_load((attempt / "hydra.yaml").read_text())["hydra"]["overrides"]["task"]
    assert "ckpt_path=last" in typed and "data=ring" not in typed
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 2


def test_one_process_per_run_folder(tmp_path):
    run = tmp_path / "busy"
    with RunLock(run):
        line = one_line_error(train(tmp_path, run, "trainer.max_epochs=1"))
        assert f"in use by process {os.getpid()} on {socket.gethostname()}" in line
        assert not (run / ".hydra").exists()  # stopped before writing anything
        with pytest.raises(ConfigError, match="one run per folder"):
            RunLock(run).acquire()
    assert not (run / ".lock").exists()  # released


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    run = tmp_path / "stale"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"pid": dead.pid, "host": socket.gethostname(), "since": time.time()}
    (run / ".lock").write_text(json.dumps(holder))
    with RunLock(run) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert f"from process {dead.pid}, which has ended" in caplog.text
    # on another host genlab cannot tell: it refuses and names the file
    (run / ".lock").write_text(json.dumps(holder | {"host": "elsewhere", "pid": 1}))
    with pytest.raises(ConfigError, match="process 1 on elsewhere .*delete it"):
        RunLock(run).acquire()


class Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path, ring_run):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    checkpoint = torch.load(ring_run / "checkpoints" / "last.ckpt", weights_only=True)
    torch.save(checkpoint | {"extra": Payload(marker)}, evil)
    line = one_line_error(cli_in_process("genlab-sample", f"ckpt={evil}", cwd=tmp_path))
    assert "weights_only=True" in line and "posix.system" in line, line
    line = one_line_error(train(tmp_path, tmp_path / "new", f"ckpt_path={evil}"))
    assert "could run code" in line
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        AtomicCheckpointIO().load_checkpoint(evil)  # Lightning's resume reads through this
    assert not marker.exists()


WRITER = """
import sys, torch
from pathlib import Path
from genlab.checkpoints import AtomicCheckpointIO
path = Path(sys.argv[1])
io = AtomicCheckpointIO()
io.save_checkpoint({"version": 1, "w": torch.zeros(10)}, path)
print("saved", flush=True)
while True:  # big writes, until killed
    io.save_checkpoint({"version": 2, "w": torch.ones(40_000_000)}, path)
"""


def test_a_writer_killed_mid_write_leaves_the_old_checkpoint_whole(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "saved"
        deadline = time.time() + 60
        torn = path.parent / f".last.ckpt.{writer.pid}.tmp"
        while time.time() < deadline and not (torn.exists() and torn.stat().st_size > 1_000_000):
            time.sleep(0.005)
        assert torn.exists(), "the writer never started its second write"
    finally:
        writer.kill()
        writer.wait()
    checkpoint = read_checkpoint(path)
    assert checkpoint["version"] == 1 and torch.equal(checkpoint["w"], torch.zeros(10))
    assert remove_torn_writes(path.parent) == [torn] and not torn.exists()


# ---- a real signal anywhere in training resumes bit for bit ----------------------------------

RESUMABLE = [
    "model=gan", "model.ema_decay=0.99", "trainer.enable_progress_bar=false",
    "trainer.limit_train_batches=6", "trainer.max_epochs=3",
    "callbacks.sample_quality.num_samples=300", "trainer.log_every_n_steps=1",
]  # fmt: skip
POINTS = [  # (signal, where it lands)
    ("SIGTERM", "batch"), ("SIGTERM", "mid_batch"), ("SIGTERM", "last_batch"),
    ("SIGTERM", "eval"), ("SIGTERM", "next_epoch"),
    ("SIGINT", "mid_batch"), ("SIGINT", "eval"),
]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, Path]:
    from genlab.train import train as fit

    from helpers import compose_train

    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    run.mkdir()
    return fit(compose_train(RESUMABLE, run)), run


@pytest.mark.parametrize(("sig", "point"), POINTS, ids=[f"{s}-{p}" for s, p in POINTS])
def test_a_real_signal_anywhere_resumes_bit_for_bit(run_train, uninterrupted, sig, point):
    full, full_dir = uninterrupted
    signal_at = [
        "+callbacks.signal._target_=helpers.SignalAt", f"+callbacks.signal.point={point}",
        "+callbacks.signal.epoch=1", f"+callbacks.signal.signal={sig}",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as stopped:
        run_train([*RESUMABLE, *signal_at], name="cut")
    assert stopped.value.code == (143 if sig == "SIGTERM" else 130)
    resumed, cut_dir = run_train(["++callbacks.signal=null", "ckpt_path=last"], name="cut")
    record = json.loads((cut_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 3
    assert len(list((cut_dir / ".hydra").glob("attempt-*"))) == 1
    full_state, resumed_state = final_state(full_dir), final_state(cut_dir)
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)
    assert resumed.keys() == full.keys()
    for name, value in full.items():
        if math.isfinite(value):
            assert resumed[name] == value, (name, resumed[name], value)
