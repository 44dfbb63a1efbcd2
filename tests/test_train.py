"""Training runs: fast_dev_run for every GAN on every 2-D dataset, what a short run leaves,
the logging schedule, resuming, no tensors read back in the steps, the GPU settings."""

import json
import math
import os

import lightning as L
import pytest
import torch

from helpers import SHORT, OpsSeen, read_events, tb_run

MODELS = ["gan", "lsgan", "wgan", "wgan_gp", "hinge"]
DATA = ["moons", "ring", "grid"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("data", DATA)
def test_fast_dev_run(model, data, run_train):
    """One batch through training and every callback: finite losses, and sample metrics
    that say what an untrained generator is: its samples crowd near the origin, far from
    the data's spread, in at most the mode there is there."""
    metrics, output_dir = run_train([f"model={model}", f"data={data}", "debug=fdr"])
    assert math.isfinite(metrics["loss/d"]) and math.isfinite(metrics["loss/g"])
    assert metrics["eval/fd"] > 0.5
    assert metrics["eval/recall"] < 0.1 and metrics["eval/coverage"] < 0.1
    if data != "moons":
        assert metrics["eval/modes"] <= 1  # the grid has a mode at the origin, the ring none
    assert not (output_dir / "checkpoints").exists()  # fast_dev_run writes none


def test_model_num_classes_makes_a_conditional_gan(run_train):
    """model.num_classes turns G and D conditional: G is fed the class as a one-hot vector
    beside its noise, and the run trains with finite losses."""
    metrics, output_dir = run_train(
        [
            "data=ring",
            "model.num_classes=${data.num_classes}",
            *SHORT,
            "trainer.log_every_n_steps=4",
        ],
        name="cgan",
    )
    assert math.isfinite(metrics["loss/g"])
    checkpoint = torch.load(output_dir / "checkpoints" / "last.ckpt", weights_only=False)
    first_layer = checkpoint["state_dict"]["generator.net.0.weight"]
    assert first_layer.shape[1] == 16 + 8  # latent_dim + one-hot labels


def test_short_run_writes_scalars_images_hparams_and_metrics(run_train):
    metrics, output_dir = run_train(
        ["model=wgan_gp", "data=ring", *SHORT, "trainer.log_every_n_steps=2"]
    )

    events = read_events(tb_run(output_dir))
    scalars = set(events.Tags()["scalars"])
    assert {"loss/d", "loss/g", "d/real", "d/fake", "loss/gp", "wasserstein"} <= scalars
    assert {"eval/modes", "eval/hq", "eval/reverse_kl", "eval/fd", "final/eval/modes"} <= scalars
    assert len(events.Scalars("loss/d")) >= 4  # 16 batches, one point every 2
    assert "samples/scatter" in events.Tags()["images"]
    scatter = events.Images("samples/scatter")
    assert [image.step for image in scatter] == [0, 1]
    assert scatter[-1].width >= 300 and scatter[-1].height >= 300
    # the HPARAMS tab: one hparams session, written before the run's end
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(events.summary_metadata)

    written = json.loads((output_dir / "metrics.json").read_text())
    assert written["status"] == "completed" and written["epochs"] == 2
    assert {"eval/modes", "eval/hq", "eval/reverse_kl"} <= set(written["metrics"])
    assert written["metrics"]["eval/modes"] == metrics["eval/modes"]
    assert (output_dir / "samples" / "last.png").stat().st_size > 10_000
    assert (output_dir / "checkpoints" / "last.ckpt").is_file()


def test_the_nvml_probe_is_dropped_only_without_a_gpu(monkeypatch):
    """Lightning's NVML-based CUDA check (reloaded by torch on every optimizer step when no
    GPU answers) goes where there is no GPU, and stays where there is one or the user unset
    it."""
    from genlab.hardware import NVML_CHECK, skip_nvml_probe

    monkeypatch.setenv(NVML_CHECK, "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not skip_nvml_probe()
    assert os.environ[NVML_CHECK] == "1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert skip_nvml_probe()
    assert NVML_CHECK not in os.environ
    assert not skip_nvml_probe()  # nothing left to drop
    monkeypatch.setenv(NVML_CHECK, "0")
    assert not skip_nvml_probe() and os.environ[NVML_CHECK] == "0"


class ReadBacks(L.Callback):
    """How many tensors each training step reads back into Python, from the step's start to
    its end (other callbacks' batch hooks included), and each gap between two steps of an
    epoch reads (Lightning's loop: fetching, logging, progress). On a GPU each read waits
    for every kernel queued before it."""

    latest: "ReadBacks | None" = None

    def __init__(self) -> None:
        self.per_step: list[int] = []
        self.per_gap: list[int] = []
        self.seen: OpsSeen | None = None
        ReadBacks.latest = self

    def close(self) -> int:
        self.seen.__exit__(None, None, None)
        reads, self.seen = self.seen.reads, None
        return reads

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen is not None:
            self.per_gap.append(self.close())
        self.seen = OpsSeen().__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.per_step.append(self.close())
        self.seen = OpsSeen().__enter__()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.seen is not None:
            self.close()  # the epoch's end draws and checks: not a gap between steps


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=gan", "data=moons", "model.ema_decay=0.999"],
        ["model=wgan_gp", "data=ring"],
        ["model=wgan", "data=ring"],
        ["experiment=dcgan_mnist_mini"],
        ["experiment=acgan_mnist_mini"],
        ["experiment=tacgan_mnist_mini"],
        ["experiment=cgan_mnist_mini"],
        ["experiment=ae_mnist_mini"],
        ["experiment=cvae_mnist_mini"],
        ["experiment=vae_mnist_mini"],
        ["experiment=pixelcnn_mnist_mini"],
        ["experiment=pix2pix_digits_edges"],
        ["experiment=cyclegan_digits_inverted"],
        ["experiment=pixelrnn_mnist_mini"],
        ["experiment=cogan_digits_inverted"],
        ["experiment=unit_digits_inverted"],
    ],
    ids=lambda overrides: overrides[0].split("=")[1],
)
def test_training_steps_never_read_a_tensor_back(overrides, run_train):
    """Between the logging steps and the guard's checks (every 50 and 10 batches), a
    training step queues its work and goes on, and so does Lightning's loop between two
    steps: nothing waits for the device. A run on
    the CPU cannot tell a device read from a host one, so this watches for the operator that
    every read runs (reads of host tensors are counted too: they cost a little each)."""
    run_train(
        [*overrides, "trainer.limit_train_batches=6", "trainer.max_epochs=1",
         "trainer.enable_progress_bar=false", "~callbacks.sample_quality", "~callbacks.sample_plots",
         f"+callbacks.read_backs._target_={__name__}.ReadBacks"]
    )  # fmt: skip
    watcher = ReadBacks.latest
    assert len(watcher.per_step) == 6 and len(watcher.per_gap) == 5
    assert watcher.per_step[1:] == [0] * 5, watcher.per_step  # the first step may check inputs
    assert watcher.per_gap == [0] * 5, watcher.per_gap


def test_the_read_back_watch_sees_the_guards_checks(run_train):
    """The watch above sees reads where there are some: the divergence guard's one read
    every `check_every_n_steps` batches."""
    run_train(
        ["model=gan", "data=moons", "trainer.limit_train_batches=6", "trainer.max_epochs=1",
         "trainer.enable_progress_bar=false", "~callbacks.sample_quality",
         "callbacks.divergence_guard.check_every_n_steps=2",
         f"+callbacks.read_backs._target_={__name__}.ReadBacks"]
    )  # fmt: skip
    per_step = ReadBacks.latest.per_step
    assert all(per_step[1::2]) and not any(per_step[2::2]), per_step


def test_step_scalars_follow_log_every_n_steps(run_train):
    _, output_dir = run_train(["data=moons", *SHORT, "trainer.log_every_n_steps=4"])
    steps = [s.step for s in read_events(tb_run(output_dir)).Scalars("loss/g")]
    assert len(steps) == 4  # 16 batches, every 4th


def test_csv_and_no_logger(run_train):
    _, output_dir = run_train(["logger=csv", *SHORT, "trainer.log_every_n_steps=4"], name="csv")
    assert "loss/d" in (output_dir / "csv" / "metrics.csv").read_text()
    metrics, output_dir = run_train(["logger=none", *SHORT], name="none")
    assert (
        json.loads((output_dir / "metrics.json").read_text())["metrics"]["eval/fd"]
        == metrics["eval/fd"]
    )
    assert not (output_dir / "tensorboard").exists()


def test_resume_continues_the_epoch_count(run_train):
    _, first = run_train(["data=ring", *SHORT], name="first")
    checkpoint = first / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 32
    # the checkpoint belongs to a run: it is resumed in that run's folder, from its record
    _, second = run_train(["trainer.max_epochs=3", f"ckpt_path={checkpoint}"], name="second")
    assert not (second / "metrics.json").exists()
    resumed = json.loads((first / "metrics.json").read_text())
    assert resumed["epochs"] == 3
    # two optimizer steps per batch (D then G): 3 epochs x 8 batches x 2
    assert resumed["global_step"] == 48


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_gpu_precision_is_bf16_where_the_gpu_has_it(
    tmp_path, monkeypatch, caplog, native_bf16, expected
):
    """hardware=gpu trains in bf16 on Ampere and newer, and falls back to float16 with loss
    scaling (saying so) on older GPUs. The GPU is simulated: CI has none."""
    from genlab import hardware
    from genlab.config import compose_run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hardware, "gpu_has_bf16", lambda: native_bf16)
    cfg = compose_run(["hardware=gpu"], tmp_path)
    assert cfg.trainer.precision == "bf16-mixed"
    hardware.check_hardware(cfg)
    assert cfg.trainer.precision == expected
    assert ("16-mixed instead" in caplog.text) == (not native_bf16)


@pytest.mark.parametrize(
    "limit", ["trainer.max_time=00:00:00:02", "trainer.max_steps=30"], ids=["max_time", "max_steps"]
)
def test_a_run_cut_short_is_scored_as_it_ends(run_train, limit):
    """The sample-quality evaluation every 1,000 epochs still scores a run that a timer or
    max_steps ends in its first epochs."""
    overrides = ["model=wgan_gp", "data=ring", "trainer.enable_progress_bar=false",
                 "trainer.limit_train_batches=8", "trainer.max_epochs=1000", limit,
                 "callbacks.sample_quality.every_n_epochs=1000"]  # fmt: skip
    metrics, output_dir = run_train(overrides)
    written = json.loads((output_dir / "metrics.json").read_text())
    assert written["status"] == "completed" and written["epochs"] < 1000
    assert {"eval/modes", "eval/hq", "eval/reverse_kl"} <= set(written["metrics"])


def test_a_run_cut_short_draws_the_models_figures_as_it_ends(run_train):
    overrides = ["model=vae", "data=digits", "data.image_size=8", "data.binarize=true",
                 "trainer.enable_progress_bar=false", "trainer.limit_train_batches=8",
                 "trainer.max_epochs=1000", "trainer.max_steps=30",
                 "callbacks.sample_plots.figures_every_n_epochs=1000",
                 "callbacks.sample_quality.every_n_epochs=1000"]  # fmt: skip
    _, output_dir = run_train(overrides)
    assert list((output_dir / "samples" / "reconstructions").glob("epoch_*.png"))
