"""Resume, divergence, interruption: a run that dies loses nothing and says why."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from genlab.callbacks.guard import DivergenceGuard
from genlab.contract import GuardReadings
from genlab.errors import DivergenceError

from helpers import BIN, TESTS, cli, cli_in_process, final_state, one_line_error, tb_run

SHORT = [
    "trainer.enable_progress_bar=false",
    "trainer.limit_train_batches=6",
    "trainer.max_epochs=4",
    "callbacks.sample_quality.num_samples=300",
    "trainer.log_every_n_steps=1",
]
# (the GAN with G's moving average is cut at seven points by real signals in
# test_run_record.py)
CASES = {
    "wgan_gp": ["model=wgan_gp", "data=ring"],
    "vae": ["model=vae", "data=digits", "data.image_size=8", "data.binarize=true"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_resumed_run_ends_exactly_like_an_uninterrupted_one(run_train, case):
    overrides = [*CASES[case], *SHORT]
    full, full_dir = run_train(overrides, name="full")
    stop = ["+callbacks.stop._target_=helpers.StopAfterEpochs", "+callbacks.stop.epochs=2"]
    cut, cut_dir = run_train([*overrides, *stop], name="cut")
    assert json.loads((cut_dir / "metrics.json").read_text())["epochs"] == 2
    resumed, resumed_dir = run_train(  # the run's own overrides, less the early stop
        ["++callbacks.stop=null", f"ckpt_path={cut_dir / 'checkpoints' / 'last.ckpt'}"], name="cut"
    )
    assert resumed_dir == cut_dir
    # the same numbers, bit for bit: metrics, last logged losses, weights
    assert resumed.keys() == full.keys()
    for name, value in full.items():
        if name == "lr" or not math.isfinite(value):
            continue
        assert resumed[name] == value, (name, resumed[name], value)
    full_state, resumed_state = final_state(full_dir), final_state(resumed_dir)
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)
    record = json.loads((resumed_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 4


@pytest.mark.parametrize("case", ["cyclegan"])
def test_a_run_cut_in_the_middle_of_an_epoch_resumes_exactly(run_train, case):
    """Ctrl-C after 3 batches of epoch 1: the checkpoint holds the loader's place, and the
    resumed run trains on the remaining batches in the same order (for CycleGAN, with the
    same image pools), ending bit for bit like an uninterrupted run."""
    overrides = {
        "cyclegan": [
            "model=cyclegan", "data=digits_inverted", "data.image_size=16", "data.batch_size=4",
            "model.generator_ab.width=4", "model.generator_ab.n_blocks=1",
            "model.discriminator_a.width=4", "model.discriminator_a.n_layers=1",
            "model.pool_size=6", "callbacks.sample_quality.num_samples=20",
            "callbacks.sample_quality.classifier_epochs=1", "trainer.enable_progress_bar=false",
            "trainer.limit_train_batches=6", "trainer.max_epochs=3",
        ],
    }[case]  # fmt: skip
    full, full_dir = run_train(overrides, name="full")
    cut = ["+callbacks.cut._target_=helpers.InterruptAtBatch", "+callbacks.cut.epoch=1",
           "+callbacks.cut.batch=3"]  # fmt: skip
    with pytest.raises(SystemExit):
        run_train([*overrides, *cut], name="cut")
    cut_dir = full_dir.parent / "cut"
    assert json.loads((cut_dir / "metrics.json").read_text())["status"] == "interrupted"
    resumed, _ = run_train([*overrides, "ckpt_path=last"], name="cut")
    full_state, resumed_state = final_state(full_dir), final_state(cut_dir)
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)
    for name, value in full.items():
        if name != "lr" and math.isfinite(value) and not name.startswith("lr/"):
            assert resumed[name] == value, (name, resumed[name], value)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(run_train, tmp_path):
    poison = [
        "+callbacks.poison._target_=helpers.PoisonWeights",
        "+callbacks.poison.epoch=1",
        "+callbacks.poison.batch=2",
    ]
    with pytest.raises(DivergenceError, match=r"loss/\w became nan at step \d+ \(epoch 1\)"):
        run_train([*SHORT, *poison], name="nan")
    output_dir = tmp_path / "nan"
    record = json.loads((output_dir / "metrics.json").read_text())
    assert record["status"] == "diverged" and "lower model.lr" in record["error"]
    state = final_state(output_dir)  # written at the end of epoch 0, before the NaN
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


class FakeModule:
    def __init__(self, saturation: float) -> None:
        self.saturation = saturation

    def guard_readings(self) -> GuardReadings:
        return GuardReadings({"loss/d": torch.tensor(0.01)}, torch.tensor(self.saturation))

    def divergence_advice(self) -> str:
        return "lower model.lr"


class FakeTrainer:
    global_step = 120
    current_epoch = 3


def test_the_guard_stops_a_saturated_discriminator_after_its_window():
    guard = DivergenceGuard(check_every_n_steps=10, saturation_window=30)
    module = FakeModule(1.0)
    guard.check(FakeTrainer(), module, 10)
    guard.check(FakeTrainer(), FakeModule(0.5), 10)  # D lost a bit: the count starts again
    guard.check(FakeTrainer(), module, 10)
    guard.check(FakeTrainer(), module, 10)
    assert guard.saturated_batches == 20
    with pytest.raises(DivergenceError, match="for 30 batches up to step 120 .* lower model.lr"):
        guard.check(FakeTrainer(), module, 10)
    off = DivergenceGuard(saturation_window=0)  # the window 0 turns the check off
    for _ in range(500):
        off.check(FakeTrainer(), module, 10)
    assert off.saturated_batches == 0


# Runs the command with SIGINT at its default, as a command typed in a terminal has it. A
# background job of a non-interactive shell (`make test &` in a script) ignores SIGINT, its
# children inherit that, and Python then never turns Ctrl-C into KeyboardInterrupt.
AS_FROM_A_TERMINAL = [
    sys.executable, "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_signal_saves_a_checkpoint_and_the_run_resumes_in_its_folder(tmp_path, sig):
    run = tmp_path / "run"
    command = [
        str(BIN / "genlab-train"), "trainer.max_epochs=200", "trainer.enable_progress_bar=false",
        "callbacks.sample_quality.every_n_epochs=50", f"hydra.run.dir={run}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    process = subprocess.Popen(
        [*AS_FROM_A_TERMINAL, *command],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        last = run / "checkpoints" / "last.ckpt"
        deadline = time.time() + 240
        while not last.exists() and time.time() < deadline and process.poll() is None:
            time.sleep(0.5)
        assert last.exists(), process.communicate()[1][-2000:]
        first_save = last.stat().st_mtime_ns
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=120)
    finally:  # a failed check leaves no training process behind to slow the other tests
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == (143 if sig == signal.SIGTERM else 130), stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    message = [line for line in stderr.splitlines() if "interrupted at epoch" in line]
    assert len(message) == 1 and "ckpt_path=last" in message[0], stderr[-2000:]
    assert message[0].startswith("genlab-train: warning: interrupted")
    if sig == signal.SIGINT:
        assert "genlab-train: warning: Ctrl-C: stopping when this batch ends" in stderr
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "interrupted"
    assert last.stat().st_mtime_ns > first_save  # saved again where training stood
    stopped = torch.load(last, weights_only=False)["global_step"]
    if sig == signal.SIGINT:
        return  # resuming after either signal is the same path: it runs once, after SIGTERM

    resumed = subprocess.run(
        [*command[:1], f"trainer.max_epochs={record['epochs'] + 2}",
         *command[2:], "ckpt_path=last"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "completed" and record["global_step"] > stopped
    # one TensorBoard run: the resumed events sit beside the first ones
    assert len(list(tb_run(run).glob("events.out.tfevents.*"))) == 2


def test_ckpt_path_last_without_a_checkpoint_is_a_one_line_error(tmp_path):
    result = cli_in_process(
        "genlab-train", "ckpt_path=last", f"hydra.run.dir={tmp_path / 'new'}", cwd=tmp_path
    )
    assert "hydra.run.dir=<run folder> ckpt_path=last" in one_line_error(result)


def test_an_unwritable_log_folder_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = cli_in_process(
        "genlab-train", f"logger.tensorboard.save_dir={blocker / 'logs'}", "debug=fdr",
        f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
    )  # fmt: skip
    line = one_line_error(result)
    assert f"cannot write logs to {blocker / 'logs'}" in line and "logger=none" in line


def test_a_typo_in_a_key_stops_the_cli_in_one_line(tmp_path):
    result = cli_in_process(
        "genlab-train", "+model.lr_G=1e-3", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert "model.lr_G is not a setting of GAN; did you mean model.lr_g?" in one_line_error(result)


@pytest.mark.slow
def test_a_16_job_parallel_sweep_leaves_every_result_intact(tmp_path):
    sweep = tmp_path / "sweep"
    started = time.monotonic()
    result = cli(
        "genlab-train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4",
        "seed=range(16)", "trainer.max_epochs=2", "trainer.limit_train_batches=20",
        "trainer.enable_progress_bar=false", "callbacks.sample_quality.num_samples=300",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=1800,
    )  # fmt: skip
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    assert len(records) == 16
    assert all(r["status"] == "completed" for r in records), [r["status"] for r in records]
    assert all(math.isfinite(r["metrics"]["eval/fd"]) for r in records)
    assert len({r["metrics"]["eval/fd"] for r in records}) == 16  # 16 seeds, 16 results
    assert all(
        len(list(p.glob("checkpoints/last.ckpt"))) == 1
        for p in sweep.iterdir()
        if p.is_dir() and (p / ".hydra").is_dir()
    )
    print(f"16 jobs, 4 at a time: {wall:.0f} s")
