"""Training runs: fast_dev_run for every model on every 2-D dataset, and what a short run leaves."""

import json
import os

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from conftest import SHORT, OpsSeen

MODELS = ["gan", "lsgan", "wgan", "wgan_gp", "hinge"]
DATA = ["moons", "ring", "grid"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("data", DATA)
def test_fast_dev_run(model, data, run_train):
    metrics, output_dir = run_train([f"model={model}", f"data={data}", "debug=fdr"])
    assert torch.isfinite(torch.tensor(metrics["loss/d"]))
    assert "eval/fd" in metrics
    if data != "moons":
        assert 0 <= metrics["eval/modes"] <= (8 if data == "ring" else 25)


def test_conditional_gan_fast_dev_run(run_train):
    metrics, _ = run_train(["data=ring", "model.num_classes=${data.num_classes}", "debug=fdr"])
    assert "loss/g" in metrics


def read_events(folder):
    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_short_run_writes_scalars_images_hparams_and_metrics(run_train):
    metrics, output_dir = run_train(
        ["model=wgan_gp", "data=ring", *SHORT, "trainer.log_every_n_steps=2"]
    )

    events = read_events(output_dir / "tensorboard")
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


def test_tensorboard_checksums_are_fast_and_the_same(tmp_path):
    """genlab's C checksums give TensorBoard's values, and the files read back: the reader
    checks every record with TensorBoard's own pure-Python checksum."""
    import random

    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference
    from tensorboard.summary.writer import record_writer

    from genlab.callbacks.tensorboard import masked_crc32c, use_fast_checksums

    draw = random.Random(0)
    for size in (0, 1, 7, 100, 5000):
        data = bytes(draw.randrange(256) for _ in range(size))
        assert masked_crc32c(data) == reference(data)
    assert use_fast_checksums() and record_writer.masked_crc32c is masked_crc32c
    logger = TensorBoardLogger(tmp_path, name="tb", version="")
    for step in range(3):
        logger.log_metrics({"loss": 0.5 + step}, step=step)
    logger.experiment.flush()
    events = read_events(tmp_path / "tb")
    assert [point.value for point in events.Scalars("loss")] == [0.5, 1.5, 2.5]


def test_self_log_skips_moving_a_metric_that_is_already_on_the_device():
    """After `skip_redundant_metric_moves`, logging a value keeps the metric's metadata
    object (Lightning's own `to` deep-copies it on every call); a move to another device
    still moves every tensor; the logged values are the same."""
    from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultCollection

    from genlab.train import skip_redundant_metric_moves

    assert skip_redundant_metric_moves() and skip_redundant_metric_moves()  # once, idempotent
    results = _ResultCollection(training=True)
    results.log("training_step", "loss", torch.tensor(1.0), on_step=True, on_epoch=True)
    metric = results["training_step.loss"]
    meta = metric.meta
    results.log("training_step", "loss", torch.tensor(3.0), on_step=True, on_epoch=True)
    assert metric.meta is meta  # not copied
    assert float(results.metrics(on_step=True)["log"]["loss_step"]) == 3.0
    assert float(results.metrics(on_step=False)["log"]["loss_epoch"]) == 2.0
    assert metric.to(torch.device("cpu")) is metric and metric.meta is meta
    metric.to(torch.device("meta"))  # elsewhere: the original path moves every tensor
    assert metric.value.device.type == "meta" and metric.cumulated_batch_size.is_meta
    assert metric.meta is not meta


class UpdateListener(L.Callback):
    """Counts Lightning's hooks around each update. Listening to them turns the direct
    updates off, so a run with this callback takes Lightning's own path."""

    latest = None

    def __init__(self) -> None:
        self.calls = {"before backward": 0, "after backward": 0, "before step": 0}
        UpdateListener.latest = self

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.calls["before backward"] += 1

    def on_after_backward(self, trainer, pl_module) -> None:
        self.calls["after backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.calls["before step"] += 1


def test_updates_skip_lightnings_hooks_only_where_no_one_listens(run_train, monkeypatch):
    """By default each update calls torch directly; with a callback that listens to the
    update hooks, every update goes through Lightning and the callback hears each one. The
    two runs end with the same weights, optimizer states and step count, bit for bit."""
    from lightning.pytorch.strategies import SingleDeviceStrategy

    through_lightning = []
    lightning_backward = SingleDeviceStrategy.backward

    def counted(self, *args, **kwargs):
        through_lightning.append(1)
        return lightning_backward(self, *args, **kwargs)

    monkeypatch.setattr(SingleDeviceStrategy, "backward", counted)
    short = ["model=wgan_gp", "data=ring", "trainer.limit_train_batches=4",
             "trainer.max_epochs=2", "~callbacks.sample_quality"]  # fmt: skip
    _, direct = run_train(short, name="direct")
    assert not through_lightning
    _, heard = run_train([*short, f"+callbacks.hear._target_={__name__}.UpdateListener"], "heard")
    updates = 2 * 4 * 6  # epochs x batches x (five critic steps and G's)
    assert len(through_lightning) == updates
    assert UpdateListener.latest.calls == dict.fromkeys(UpdateListener.latest.calls, updates)
    direct, heard = (
        torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)
        for folder in (direct, heard)
    )
    assert direct["global_step"] == heard["global_step"] == updates
    assert direct["state_dict"].keys() == heard["state_dict"].keys()
    for name, value in direct["state_dict"].items():
        assert torch.equal(value, heard["state_dict"][name]), name
    for mine, theirs in zip(direct["optimizer_states"], heard["optimizer_states"], strict=True):
        for key, state in mine["state"].items():
            for name, value in state.items():
                assert torch.equal(value, theirs["state"][key][name]), (key, name)


@pytest.mark.parametrize(
    "change",
    ["nothing", "profiler asked for", "DDP", "a module hook", "a raw torch optimizer"],
)
def test_direct_updates_only_where_nothing_can_tell(change, tmp_path):
    from lightning.pytorch.core.optimizer import LightningOptimizer

    from genlab.models.base import GenerativeModule
    from genlab.train import build_trainer, compose_run

    class Model(GenerativeModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.weight = nn.Parameter(torch.zeros(()))

    class Listening(Model):
        def on_after_backward(self) -> None:
            pass

    cfg = compose_run(["model=gan", "data=moons"], tmp_path)
    if change == "profiler asked for":
        cfg.trainer.profiler = "simple"
    if change == "DDP":
        cfg.trainer.update(accelerator="cpu", devices=2, strategy="ddp")
    model = Listening() if change == "a module hook" else Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if change != "a raw torch optimizer":
        optimizer = LightningOptimizer(optimizer)
    assert not model.updates_directly(optimizer)  # no trainer yet
    model.trainer = build_trainer(cfg, [], [])
    assert model.updates_directly(optimizer) == (change == "nothing")
    assert model.updates_directly(optimizer) == (change == "nothing")  # the remembered answer
    if change == "nothing":  # a new trainer is asked anew
        cfg.trainer.profiler = "simple"
        model.trainer = build_trainer(cfg, [], [])
        assert not model.updates_directly(optimizer)


def test_lightning_bookkeeping_shortcuts_change_nothing(tmp_path):
    """The per-hook shortcuts (a profiler whose `profile` is free, plain attributes set
    without nn.Module's checks, a stored training_step signature) leave Lightning's view of
    the run as it was, and a profiler asked for is still used."""
    from lightning.pytorch.profilers import SimpleProfiler
    from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature

    from genlab.train import QuietProfiler, build_trainer, compose_run, instantiate_model

    cfg = compose_run(["model=wgan_gp", "data=ring"], tmp_path)
    trainer = build_trainer(cfg, [], [])
    assert isinstance(trainer.profiler, QuietProfiler)
    with trainer.profiler.profile("[Callback]x.on_train_batch_end") as entered:
        assert entered is None
    cfg.trainer.profiler = "simple"
    assert isinstance(build_trainer(cfg, [], []).profiler, SimpleProfiler)

    model = instantiate_model(cfg.model)[0]
    assert is_param_in_hook_signature(model.training_step, "batch_idx", min_args=2)
    model._current_fx_name = "training_step"
    model.guard_values = {"loss/d": torch.zeros(())}
    assert model._current_fx_name == "training_step" and model.guard_values["loss/d"] == 0
    registered = {*dict(model.named_buffers()), *dict(model.named_parameters()), *model._modules}
    assert not {"_current_fx_name", "guard_values"} & registered
    model.extra = nn.Linear(1, 1)  # any other name still goes through nn.Module
    assert "extra" in model._modules


def test_adam_is_fused_by_default_and_one_override_gives_torchs_choice(tmp_path):
    """Every Adam node asks for Adam's fused kernel (the CPU fast path); `fused=null` gives
    torch's own choice back, one optimizer at a time."""
    from genlab.train import compose_run, instantiate_model

    def optimizers(overrides, folder):
        model = instantiate_model(compose_run(overrides, tmp_path / folder).model)[0]
        built = model.configure_optimizers()
        return built if isinstance(built, list) else [built]

    for model in ("gan", "dcgan", "wgan_gp", "cgan", "vae", "pixelcnn"):
        data = "moons" if model == "gan" else "mnist_mini"
        for optimizer in optimizers([f"model={model}", f"data={data}"], model):
            assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["fused"]
    opt_g, opt_d = optimizers(["model=gan", "data=moons", "model.optimizer_g.fused=null"], "g")
    assert not opt_g.defaults["fused"] and opt_d.defaults["fused"]
    (vae,) = optimizers(["model=vae", "data=mnist_mini", "model.optimizer.fused=null"], "v")
    assert not vae.defaults["fused"]


def test_the_nvml_probe_is_dropped_only_without_a_gpu(monkeypatch):
    """Lightning's NVML-based CUDA check (reloaded by torch on every optimizer step when no
    GPU answers) goes where there is no GPU, and stays where there is one or the user unset
    it."""
    from genlab.train import NVML_CHECK, skip_nvml_probe

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
    steps = [s.step for s in read_events(output_dir / "tensorboard").Scalars("loss/g")]
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
    _, second = run_train(
        ["data=ring", *SHORT, "trainer.max_epochs=3", f"ckpt_path={checkpoint}"], name="second"
    )
    resumed = json.loads((second / "metrics.json").read_text())
    assert resumed["epochs"] == 3
    # two optimizer steps per batch (D then G): 3 epochs x 8 batches x 2
    assert resumed["global_step"] == 48


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_gpu_precision_is_bf16_where_the_gpu_has_it(
    tmp_path, monkeypatch, capsys, native_bf16, expected
):
    """hardware=gpu trains in bf16 on Ampere and newer, and falls back to float16 with loss
    scaling (saying so) on older GPUs. The GPU is simulated: CI has none."""
    from genlab import train as train_module
    from genlab.train import check_hardware, compose_run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(train_module, "gpu_has_bf16", lambda: native_bf16)
    cfg = compose_run(["hardware=gpu"], tmp_path)
    assert cfg.trainer.precision == "bf16-mixed"
    check_hardware(cfg)
    assert cfg.trainer.precision == expected
    assert ("16-mixed instead" in capsys.readouterr().err) == (not native_bf16)
