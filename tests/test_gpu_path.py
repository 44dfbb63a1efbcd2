"""The GPU path's code on the CPU: `model.compile`, channels-last conv nets and bf16 mixed
precision, in short real runs. `hardware=gpu` turns on the same settings (bf16, channels-last
for images); CI has no GPU, so they run here on the CPU."""

import math

import lightning as L
import pytest
import torch

from genlab import speedups

from helpers import final_state

SHORT = [
    "trainer.limit_train_batches=3",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "~callbacks.sample_quality",
    "trainer.enable_progress_bar=false",
]


class Watch(L.Callback):
    """What G's forward passes ran under: torch.compile's tracing, autocast; and the memory
    format of the conv weights at the end."""

    latest: "Watch | None" = None

    def __init__(self) -> None:
        self.compiled = False
        self.autocast = False
        self.channels_last: list[bool] = []
        Watch.latest = self

    def on_fit_start(self, trainer, pl_module) -> None:
        def seen(module, args) -> None:
            self.compiled |= torch.compiler.is_compiling()
            self.autocast |= torch.is_autocast_enabled("cpu")

        pl_module.generator.register_forward_pre_hook(seen)

    def on_train_end(self, trainer, pl_module) -> None:
        self.channels_last = [
            p.is_contiguous(memory_format=torch.channels_last)
            for p in pl_module.parameters()
            if p.dim() == 4
        ]


WATCH = f"+callbacks.watch._target_={__name__}.Watch"


def test_compiled_nets_train_and_checkpoint_like_eager_ones(run_train):
    """model.compile=true compiles G and D in place: the run trains through the compiled
    nets, and its checkpoint has the eager model's keys, so either resumes the other."""
    metrics, compiled = run_train(
        ["model=gan", "data=moons", "model.compile=true", "~callbacks.sample_plots", *SHORT,
         WATCH], name="compiled"
    )  # fmt: skip
    assert Watch.latest.compiled
    assert math.isfinite(metrics["loss/d"]) and math.isfinite(metrics["loss/g"])
    _, eager = run_train(
        ["model=gan", "data=moons", "~callbacks.sample_plots", *SHORT], name="eager"
    )
    assert final_state(compiled).keys() == final_state(eager).keys()


def test_channels_last_conv_nets_train_in_nhwc(run_train):
    metrics, _ = run_train(
        ["model=dcgan", "data=digits", "data.image_size=16", "model.generator.width=8",
         "model.discriminator.width=8", "model.channels_last=true", *SHORT, WATCH]
    )  # fmt: skip
    assert Watch.latest.channels_last and all(Watch.latest.channels_last)
    assert math.isfinite(metrics["loss/d"]) and math.isfinite(metrics["loss/g"])


@pytest.mark.parametrize(
    "overrides",
    [["model=wgan_gp", "data=ring"], ["experiment=vae_mnist_mini"]],
    ids=["wgan_gp", "vae"],
)
def test_bf16_mixed_precision_trains_with_every_update_counted(overrides, run_train, monkeypatch):
    """trainer.precision=bf16-mixed (hardware=gpu's): the forward passes run under autocast,
    the losses stay finite, and every update is counted (the direct updates hold under bf16,
    which needs no gradient scaler)."""
    direct = []
    step = speedups.step
    monkeypatch.setattr(speedups, "step", lambda optimizer: direct.append(1) or step(optimizer))
    watch = [WATCH] if overrides[0] == "model=wgan_gp" else []
    metrics, output_dir = run_train([*overrides, "trainer.precision=bf16-mixed", *SHORT, *watch])
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("loss/"))
    if watch:
        assert Watch.latest.autocast
    checkpoint = torch.load(output_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == len(direct) == 3 * (6 if watch else 1)
