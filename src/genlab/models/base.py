"""What every genlab model shares: its updates, optimizers, checkpointed random state, the
divergence guard's readings and cheap step logging (`GenerativeModule`), and for the models
that draw samples, the sampling surface (`SamplingModule`). genlab/contract.py lists what
the callbacks may ask of a model.
"""

import functools
import random
from collections.abc import Callable, Iterable, Sequence

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from genlab import speedups
from genlab.contract import GuardReadings
from genlab.errors import ConfigError, require

# An optimizer without its learning rate and betas (`torch.optim.Adam` with `_partial_:
# true`, and settings such as `fused`): the model gives it those, from its own settings.
OptimizerFactory = Callable[..., Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]


def check_lr(name: str, value: float) -> float:
    """A learning rate must be > 0."""
    require(value > 0, f"model.{name} must be > 0 (got {value}); try model.{name}=2e-4")
    return float(value)


def check_betas(name: str, betas: Sequence[float] | None) -> tuple[float, float] | None:
    """Adam's betas: two numbers in [0, 1), or null for an optimizer that takes none."""
    if betas is None:
        return None
    betas = tuple(float(b) for b in betas)
    require(
        len(betas) == 2 and all(0 <= b < 1 for b in betas),
        f"model.{name} must be two numbers in [0, 1), e.g. [0.5, 0.999] (got {list(betas)})",
    )
    return betas


def check_optimizer(factory: OptimizerFactory, key: str, **sources: str | None) -> None:
    """The model's settings are the one source of what it gives its optimizers (`sources`:
    the optimizer's argument -> the model setting, e.g. lr="model.lr_g"; None where the
    model gives none): a factory that brings its own would silently win over them."""
    given = factory.keywords if isinstance(factory, functools.partial) else {}
    for argument, source in sources.items():
        if source is not None and argument in given:
            raise ConfigError(
                f"{key}.{argument} would override {source}; set {source} instead and drop it "
                f"with ~{key}.{argument}"
            )


def players_settings(
    optimizer_g: OptimizerFactory,
    optimizer_d: OptimizerFactory,
    lr: float,
    lr_g: float | None = None,
    lr_d: float | None = None,
    betas_g: Sequence[float] | None = (0.5, 0.999),
    betas_d: Sequence[float] | None = (0.5, 0.999),
) -> tuple[float, float, tuple[float, float] | None, tuple[float, float] | None]:
    """G's and D's learning rates (`lr_g`, `lr_d`: `lr` unless set) and betas, checked, and
    their optimizer factories checked against them: (lr_g, lr_d, betas_g, betas_d)."""
    check_lr("lr", lr)  # first: lr_g and lr_d follow it unless set
    lr_g = check_lr("lr_g", lr if lr_g is None else lr_g)
    lr_d = check_lr("lr_d", lr if lr_d is None else lr_d)
    betas_g, betas_d = check_betas("betas_g", betas_g), check_betas("betas_d", betas_d)
    check_optimizer(optimizer_g, "model.optimizer_g", lr="model.lr_g",
                    betas="model.betas_g" if betas_g else None)  # fmt: skip
    check_optimizer(optimizer_d, "model.optimizer_d", lr="model.lr_d",
                    betas="model.betas_d" if betas_d else None)  # fmt: skip
    return lr_g, lr_d, betas_g, betas_d


def shared_settings(
    optimizer_g: OptimizerFactory, optimizer_d: OptimizerFactory, lr: float, betas
) -> tuple[float, tuple[float, float] | None]:
    """One learning rate (`model.lr`) and one pair of betas (`model.betas`, null: the
    factory's own) for every optimizer, checked with the G and D factories: (lr, betas)."""
    lr, betas = check_lr("lr", lr), check_betas("betas", betas)
    betas_source = "model.betas" if betas else None
    check_optimizer(optimizer_g, "model.optimizer_g", lr="model.lr", betas=betas_source)
    check_optimizer(optimizer_d, "model.optimizer_d", lr="model.lr", betas=betas_source)
    return lr, betas


def check_ema_decay(ema_decay: float | None) -> None:
    require(
        ema_decay is None or 0 < ema_decay < 1,
        f"model.ema_decay must lie in (0, 1) or be null (got {ema_decay})",
    )


def make_optimizer(
    factory: OptimizerFactory,
    parameters: Iterable[nn.Parameter],
    lr: float,
    betas: tuple[float, float] | None = None,
) -> Optimizer:
    """The factory's optimizer over `parameters`, with the model's learning rate and betas."""
    settings = {"lr": lr} if betas is None else {"lr": lr, "betas": betas}
    return factory(parameters, **settings)


def spread_labels(n: int, num_classes: int, device: torch.device | None = None) -> Tensor:
    """Labels 0, 1, ..., K-1, 0, 1, ... so that n samples cover every class evenly."""
    return torch.arange(n, device=device) % num_classes


class GenerativeModule(L.LightningModule):
    """A genlab model: updates through `optimize`, its latest losses in `guard_values`."""

    num_classes: int = 0
    # what to call each optimizer's learning rate in the logs: lr/<name> (one optimizer: lr)
    optimizer_names: tuple[str, ...] = ()
    # the latest step's losses, for the divergence guard: every training_step sets them
    guard_values: dict[str, Tensor] | None = None
    loss_charts: dict[str, list[str]] = {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the RNG states, so that a resumed run draws the same noise as an
        uninterrupted one (Lightning restores weights, optimizers and loops, not RNGs)."""
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        random.setstate(states["python"])

    def speed_up(self, compile: bool = False, channels_last: bool = False) -> None:
        """What genlab-train does with model.channels_last and model.compile: channels-last
        memory for conv nets (a convolution with NHWC weights makes NHWC outputs, so the
        batches need no conversion), and torch.compile on each net that has weights.
        `nn.Module.compile` works in place, so the checkpoint keys stay the same and a
        compiled run resumes an eager one and back."""
        if channels_last:
            self.to(memory_format=torch.channels_last)
        if compile:
            for net in self.children():
                if next(net.parameters(), None) is not None:
                    net.compile()

    def on_train_epoch_end(self) -> None:
        # each optimizer's learning rate once per epoch, the one the epoch trained with (at the
        # epoch's end, which a run resumed in the middle of an epoch reaches too)
        self.log_dict(self.learning_rates(), on_step=False, on_epoch=True, rank_zero_only=True)
        # Under manual optimization (every genlab model) Lightning leaves the LR schedulers
        # to the model: one step per epoch.
        schedulers = None if self.automatic_optimization else self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    def optimize(self, loss: Tensor, optimizer, grad_clip: float | None = None) -> None:
        """One update: backward, gradient-norm clipping inside the step when set, step,
        through Lightning (`manual_backward`, `LightningOptimizer.step`), or straight to torch
        where the `direct_updates` speedup finds that no hook listens."""
        optimizer.zero_grad(set_to_none=True)
        direct = speedups.updates_directly(self, optimizer)
        if direct:
            loss.backward()
        else:
            self.manual_backward(loss)
        if grad_clip:
            self.clip_gradients(
                optimizer, gradient_clip_val=grad_clip, gradient_clip_algorithm="norm"
            )
        if direct:
            speedups.step(optimizer)
        else:
            optimizer.step()

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def guard_readings(self) -> GuardReadings:
        """The latest step's losses for the divergence guard (`Guarded`)."""
        return GuardReadings(self.guard_values or {})

    def divergence_advice(self) -> str:
        """The guard's advice: a lower learning rate, with the ones in use now."""
        trainer = attached_trainer(self)
        if trainer is None or not trainer.optimizers:
            return "lower model.lr"
        now = ", ".join(f"{name} {rate:g}" for name, rate in self.learning_rates().items())
        return f"lower model.lr (now {now})"

    def learning_rates(self) -> dict[str, float]:
        """Each optimizer's current learning rate, by name (`lr` for a single one)."""
        optimizers = attached_trainer(self).optimizers
        names = self.optimizer_names or tuple(str(i) for i in range(len(optimizers)))
        return {
            "lr" if len(optimizers) == 1 else f"lr/{name}": optimizer.param_groups[0]["lr"]
            for name, optimizer in zip(names, optimizers, strict=False)
        }

    def log_step_metrics(self, stats: dict[str, Tensor]) -> None:
        """A logging step's metrics, the losses on the progress bar too."""
        losses = {k: v for k, v in stats.items() if k.startswith("loss/")}
        self.log_dict(losses, on_step=True, on_epoch=False, prog_bar=True)
        others = {k: v for k, v in stats.items() if k not in losses}
        if others:
            self.log_dict(others, on_step=True, on_epoch=False)

    def logging_this_step(self) -> bool:
        """True on the batches whose step metrics the logger will write.

        Calling `self.log` on every batch costs more than a tiny model's step, so the
        models build their step metrics only on the batches that Lightning writes: every
        `trainer.log_every_n_steps`-th batch since the start of training, and the last one.
        """
        trainer = attached_trainer(self)
        if trainer is None:
            return False
        if trainer.fast_dev_run:
            return True
        every = trainer.log_every_n_steps
        batch = trainer.fit_loop.epoch_loop.total_batch_idx + 1
        return bool(every) and (batch % every == 0 or trainer.should_stop)


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The module's trainer, or None before it is attached to one."""
    try:
        return module.trainer
    except RuntimeError:
        return None


class SamplingModule(GenerativeModule):
    """A model that draws samples from noise (`Sampler`): the GANs, VAEs and PixelCNN."""

    def resolve_labels(self, n: int, labels: Tensor | int | None) -> Tensor | None:
        """The labels to generate with: None for unconditional models, else n class indices."""
        if not self.conditional:
            require(labels is None, "this model is unconditional: drop the labels")
            return None
        if labels is None:
            return spread_labels(n, self.num_classes, self.device)
        labels = torch.as_tensor(labels, device=self.device).long().flatten()
        if labels.numel() == 1:
            labels = labels.expand(n)
        require(len(labels) == n, f"got {len(labels)} labels for {n} samples")
        require(
            bool(((labels >= 0) & (labels < self.num_classes)).all()),
            f"labels must lie in 0..{self.num_classes - 1}",
        )
        return labels

    def sample(
        self, n: int, labels: Tensor | int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """n samples from the model, in data space, on the model's device."""
        raise NotImplementedError

    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample (drawn once to find out; models that know it say so)."""
        return tuple(self.sample(2).shape[1:])

    def noise(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        """Standard normal noise on the model's device; reproducible when `generator` is given
        (a CPU generator, so that the same seed gives the same noise on any device)."""
        if generator is None:
            return torch.randn(shape, device=self.device)
        return torch.randn(shape, generator=generator).to(self.device)


@torch.no_grad()
def update_moving_average(
    average: nn.Module, current: nn.Module, updates: Tensor, decay: float
) -> None:
    """average <- d * average + (1 - d) * current, with d ramped up as (1 + t) / (10 + t) at
    first so that the average forgets the random initialisation quickly (t counts the
    updates, in `updates`, incremented here); buffers (BatchNorm's running statistics) are
    copied. The decay is computed where the count lives, so that a GPU run never waits to
    read it back (one sync a step otherwise)."""
    updates += 1
    t = updates.float()
    weight = 1 - ((1 + t) / (10 + t)).clamp(max=decay)
    for mean, parameter in zip(average.parameters(), current.parameters(), strict=True):
        mean.lerp_(parameter, weight)
    for mean_buffer, buffer in zip(average.buffers(), current.buffers(), strict=True):
        mean_buffer.copy_(buffer)


class evaluating:
    """Puts a module in eval mode for a block and restores its previous mode after."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __enter__(self) -> nn.Module:
        self.was_training = self.module.training
        self.module.eval()
        return self.module

    def __exit__(self, *exc) -> None:
        self.module.train(self.was_training)
