"""What every genlab model shares: the sampling surface and cheap step logging.

Callbacks and `genlab-sample` talk to a model only through `sample(n, labels, generator)`,
`num_classes` and `conditional`.
"""

import inspect
import random
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor, nn

from genlab.errors import require


def spread_labels(n: int, num_classes: int, device: torch.device | None = None) -> Tensor:
    """Labels 0, 1, ..., K-1, 0, 1, ... so that n samples cover every class evenly."""
    return torch.arange(n, device=device) % num_classes


# Attributes set several times a step that are never parameters, buffers or submodules:
# Lightning names the running hook in `_current_fx_name` before and after every hook it
# calls (about 20 times a GAN step), and the models hand the guard their latest values.
# `nn.Module.__setattr__` checks each assignment against its parameters, buffers and
# submodules (2 us); these skip the checks, with the same result.
PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "guard_values"})

# What Lightning runs around each backward pass and optimizer step under manual optimization,
# for every callback and for the module: `optimize` takes them only when someone listens.
UPDATE_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


class GenerativeModule(L.LightningModule):
    num_classes: int = 0
    # what to call each optimizer's learning rate in the logs: lr/<name> (one optimizer: lr)
    optimizer_names: tuple[str, ...] = ()
    # the latest step's losses (and, for GANs, D's weaker accuracy) for the divergence guard
    guard_values: dict[str, Tensor] | None = None
    guard_saturation: Tensor | None = None
    # (a weak reference to the trainer, whether `optimize` may skip Lightning's update hooks)
    direct_updates: tuple[weakref.ref, bool] | None = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # Lightning inspects `training_step`'s signature on every batch (does it take
        # batch_idx?); a stored signature answers at once (inspect honours __signature__).
        step = cls.__dict__.get("training_step")
        if inspect.isfunction(step):
            step.__signature__ = inspect.signature(step)

    def __setattr__(self, name: str, value) -> None:
        if name in PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @contextmanager
    def toggled_optimizer(self, optimizer) -> Iterator[None]:
        """Inside the block only `optimizer`'s parameters get gradients: the other optimizers'
        parameters (D's while G learns, G's while D learns) are frozen and restored after.
        Lightning's own version gives the same states through a dict of every parameter
        (20 us a toggle on the moons nets, two to six toggles a step); this lists the others
        once per call (a quarter of that)."""
        inner = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer or not
        own = {id(p) for group in inner.param_groups for p in group["params"]}
        frozen = [
            p
            for other in self.trainer.optimizers
            if other is not inner
            for group in other.param_groups
            for p in group["params"]
            if p.requires_grad and id(p) not in own
        ]
        for parameter in frozen:
            parameter.requires_grad_(False)
        try:
            yield
        finally:
            for parameter in frozen:
                parameter.requires_grad_(True)

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

    def on_train_epoch_start(self) -> None:
        """Log each optimizer's learning rate once per epoch (schedules included)."""
        optimizers = self.trainer.optimizers
        names = self.optimizer_names or tuple(str(i) for i in range(len(optimizers)))
        rates = {
            "lr" if len(optimizers) == 1 else f"lr/{name}": optimizer.param_groups[0]["lr"]
            for name, optimizer in zip(names, optimizers, strict=False)
        }
        self.log_dict(rates, on_step=False, on_epoch=True, rank_zero_only=True)

    def on_train_epoch_end(self) -> None:
        # Under manual optimization (every genlab model) Lightning leaves the LR schedulers
        # to the model: one step per epoch.
        schedulers = None if self.automatic_optimization else self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    def optimize(self, loss: Tensor, optimizer, grad_clip: float | None = None) -> None:
        """One update: backward, gradient-norm clipping inside the step when set, step.

        Lightning's `manual_backward` and `LightningOptimizer.step` pass each update through
        the strategy and the precision plugin, which call `on_before_backward`,
        `on_after_backward` and `on_before_optimizer_step` on every callback and on the module:
        about 0.1 ms an update on a CPU, 2 to 4% of a small model's step. Where nothing can
        tell the difference (one device, plain or bf16 precision, no profiler asked for, and
        none of those hooks overridden), the update calls torch directly. It keeps Lightning's
        step accounting (`trainer.global_step` counts optimizer steps as before); anywhere
        else it goes Lightning's way."""
        optimizer.zero_grad(set_to_none=True)
        direct = self.updates_directly(optimizer)
        if direct:
            loss.backward()
        else:
            self.manual_backward(loss)
        if grad_clip:
            self.clip_gradients(
                optimizer, gradient_clip_val=grad_clip, gradient_clip_algorithm="norm"
            )
        if direct:
            optimizer._on_before_step()  # the manual loop's step counter (and profiler)
            optimizer.optimizer.step()
            optimizer._on_after_step()
        else:
            optimizer.step()

    def updates_directly(self, optimizer) -> bool:
        """Whether `optimize` may skip Lightning's update hooks: worked out once per trainer."""
        trainer = self._trainer
        if trainer is None or not isinstance(optimizer, LightningOptimizer):
            return False
        known = self.direct_updates
        if known is not None and known[0]() is trainer:
            return known[1]
        precision = trainer.precision_plugin
        direct = (
            not self.automatic_optimization
            and self._fabric is None
            and type(trainer.strategy) is SingleDeviceStrategy
            and (
                type(precision) is Precision
                or (type(precision) is MixedPrecision and precision.scaler is None)
            )
            and isinstance(trainer.profiler, PassThroughProfiler)
            and not any(
                is_overridden(hook, self, L.LightningModule)
                for hook in ("backward", *UPDATE_HOOKS)  # the module also runs the backward
            )
            and not any(
                is_overridden(hook, callback, L.Callback)
                for callback in trainer.callbacks
                for hook in UPDATE_HOOKS
            )
        )
        self.direct_updates = (weakref.ref(trainer), direct)
        return direct

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

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

    def logging_this_step(self) -> bool:
        """True on the batches whose step metrics the logger will write.

        Calling `self.log` on every batch costs more than a tiny model's step, so the
        models build their step metrics only on the batches that Lightning would write
        (every `trainer.log_every_n_steps`).
        """
        trainer = self._trainer
        if trainer is None:
            return False
        return trainer.fast_dev_run or trainer._logger_connector.should_update_logs


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
