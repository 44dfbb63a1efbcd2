"""What every genlab model shares: the sampling surface and cheap step logging.

Callbacks and `genlab-sample` talk to a model only through `sample(n, labels, generator)`,
`num_classes` and `conditional`.
"""

import random

import lightning as L
import torch
from torch import Tensor, nn

from genlab import speedups
from genlab.errors import require


def spread_labels(n: int, num_classes: int, device: torch.device | None = None) -> Tensor:
    """Labels 0, 1, ..., K-1, 0, 1, ... so that n samples cover every class evenly."""
    return torch.arange(n, device=device) % num_classes


class GenerativeModule(L.LightningModule):
    num_classes: int = 0
    # what to call each optimizer's learning rate in the logs: lr/<name> (one optimizer: lr)
    optimizer_names: tuple[str, ...] = ()
    # the latest step's losses (and, for GANs, D's weaker accuracy) for the divergence guard
    guard_values: dict[str, Tensor] | None = None
    guard_saturation: Tensor | None = None

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
