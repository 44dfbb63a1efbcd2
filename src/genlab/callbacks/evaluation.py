"""Sample-quality metrics each epoch; the last epoch's values are the run's final metrics."""

import lightning as L
import torch

from genlab.metrics import frechet_distance, mode_coverage, prdc


class SampleQuality(L.Callback):
    """Compares `num_samples` generated samples with the held-out real set.

    - `eval/fd`, `eval/precision`, `eval/recall`, `eval/density`, `eval/coverage` in the
      data's feature space (the points themselves for 2-D data);
    - `eval/modes`, `eval/hq`, `eval/reverse_kl` when the data has known mixture centres.

    Every rank computes the same numbers from the same seed; only rank 0 logs them.
    """

    def __init__(
        self, num_samples: int = 2500, every_n_epochs: int = 1, k: int = 5, seed: int = 4321
    ) -> None:
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.k = k
        self.seed = seed

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last_epoch = trainer.current_epoch + 1 >= (trainer.max_epochs or 0) or trainer.fast_dev_run
        if (trainer.current_epoch + 1) % self.every_n_epochs and not last_epoch:
            return
        metrics = self.evaluate(trainer.datamodule, pl_module)
        pl_module.log_dict({f"eval/{k}": v for k, v in metrics.items()}, rank_zero_only=True)

    def evaluate(
        self, datamodule: L.LightningDataModule, pl_module: L.LightningModule
    ) -> dict[str, float]:
        generator = torch.Generator().manual_seed(self.seed)
        real, _ = datamodule.eval_set()
        fake = pl_module.sample(self.num_samples, None, generator=generator).cpu()
        real = real[: self.num_samples].cpu()
        metrics = {"fd": frechet_distance(real.flatten(1), fake.flatten(1))}
        metrics |= prdc(real.flatten(1), fake.flatten(1), k=self.k)
        centers = getattr(datamodule, "centers", None)
        if centers is not None:
            metrics |= mode_coverage(fake, centers, datamodule.std)
        return metrics
