"""Sample-quality metrics each epoch; the last epoch's values are the run's final metrics."""

from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from genlab.callbacks.run_end import fit_ends_here
from genlab.contract import HeldOutLikelihood, PairSampler, Translator
from genlab.metrics import (
    batched,
    class_entropy,
    frechet_distance,
    least_class_recall,
    load_or_train_classifier,
    mode_coverage,
    prdc,
)
from genlab.metrics.distances import equal_sizes
from genlab.metrics.inception import check_inception_fid_available, inception_fid_score
from genlab.metrics.stacked import ChannelReader, channel_reader, mode_metrics
from genlab.metrics.translation import image_errors


class SampleQuality(L.Callback):
    """Compares `num_samples` generated samples with the held-out real set.

    Points: `eval/fd`, `eval/precision`, `eval/recall`, `eval/density`, `eval/coverage` on
    the coordinates, plus `eval/modes`, `eval/hq`, `eval/reverse_kl` when the data has known
    mixture centres. fd and PRDC compare equal numbers of real and generated samples (the
    larger set cut by a subset drawn with `seed`, the same every epoch): `eval/prdc_n` per
    side.

    Labelled images: the same distances in the penultimate features of a digit classifier
    trained once on the training split and cached in `cache_dir`, plus `eval/fd_floor`
    (the distance between two halves of the real held-out set, so that `fd` means something),
    `eval/class_entropy` (of the predicted classes; ln 10 = 2.303 when all digits are equally
    frequent) and, for conditional models, `eval/cond_acc` (samples classified as the label
    they were asked for) beside `eval/real_acc` (the classifier's accuracy on the real
    held-out images, the ceiling for cond_acc), and `eval/recall_class_min` (the lowest
    recall over the classes, each class's held-out images against the samples asked for it:
    collapse within a class).

    `HeldOutLikelihood` models add their held-out numbers: `eval/elbo`,
    `eval/iwae`, `eval/iwae_k<k>`, `eval/rec`, `eval/kl` for the VAE family, `eval/nll`
    (nats per image) and `eval/bpd` (bits per dimension) for the VAE and PixelCNN.

    Stacked MNIST (`data=stacked_mnist`, a digit per channel): the classifier is trained on
    the single digits and reads each channel, so fd and PRDC use the three channels'
    features side by side and `class_entropy` is over the 1,000 digit triples (ln 1000 =
    6.908 when even); `eval/modes` and `eval/reverse_kl` count the triples of
    `data.mode_samples` samples (VEEGAN's and PacGAN's "modes" and "KL", `metrics.stacked`),
    beside their floor on as many real held-out triples, `eval/modes_real`,
    `eval/reverse_kl_real` and `eval/real_acc` (the share of real triples read right).

    `PairSampler` models (CoGAN) are scored on their pairs instead (`pair_metrics`):
    `eval/pair_psnr`, `eval/pair_agree`, `eval/fd_a`, `eval/fd_b`, `eval/class_entropy_a`,
    `eval/class_entropy_b`.

    Every rank computes the same numbers from the same seed; only rank 0 logs them.
    """

    def __init__(
        self,
        num_samples: int = 2500,
        every_n_epochs: int = 1,
        k: int = 5,
        seed: int = 4321,
        cache_dir: str = "data/classifiers",
        inception_fid: bool = False,
        classifier_epochs: int = 15,
    ) -> None:
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.k = k
        self.seed = seed
        self.cache_dir = Path(cache_dir)
        self.inception_fid = inception_fid
        if inception_fid:
            check_inception_fid_available()  # fail at the start, not after an hour of training
        self.classifier_epochs = classifier_epochs
        self.classifiers: dict[str, torch.nn.Module] = {}  # per domain ("data", "a", "b")
        self.classifier_from_cache: bool | None = None
        # the held-out images' classifier features, computed once: (classifier, images, features)
        self.real_features: tuple[torch.nn.Module, Tensor, Tensor] | None = None
        self.stacked_floor: dict[str, float] | None = None  # real data's eval/modes_real, ...

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs and not fit_ends_here(trainer):
            return
        metrics = self.evaluate(trainer.datamodule, pl_module)
        pl_module.log_dict({f"eval/{k}": v for k, v in metrics.items()}, rank_zero_only=True)

    def evaluate(
        self, datamodule: L.LightningDataModule, pl_module: L.LightningModule
    ) -> dict[str, float]:
        if isinstance(pl_module, Translator):
            return self.translation_metrics(datamodule, pl_module)
        generator = torch.Generator().manual_seed(self.seed)
        if isinstance(pl_module, PairSampler):
            pairs = pl_module.sample_pairs(self.num_samples, generator=generator)
            return self.pair_metrics(datamodule, *(images.cpu() for images in pairs))
        labels = pl_module.resolve_labels(self.num_samples, None)
        fake = pl_module.sample(self.num_samples, labels, generator=generator).cpu()
        real, real_labels = datamodule.eval_set()
        metrics = {}
        if isinstance(pl_module, HeldOutLikelihood):  # ELBO, IWAE, NLL
            metrics |= pl_module.held_out_metrics(real, real_labels, seed=self.seed)
        if len(datamodule.shape) == 1:
            return metrics | self.point_metrics(real.cpu(), fake, datamodule)
        if datamodule.labelled:
            metrics |= self.image_metrics(
                real.cpu(),
                real_labels.cpu(),
                fake,
                None if labels is None else labels.cpu(),
                datamodule,
            )
        if hasattr(datamodule, "channel_digits"):  # stacked MNIST: a digit per channel
            metrics |= self.stacked_modes(datamodule, pl_module)
        return metrics

    def point_metrics(self, real: Tensor, fake: Tensor, datamodule) -> dict[str, float]:
        """fd and PRDC on equal numbers of real and generated points (both depend on the
        sizes), the mode figures on every generated point."""
        real_part, fake_part = equal_sizes(real, fake, self.seed)
        metrics = {"fd": frechet_distance(real_part, fake_part)}
        metrics |= prdc(real_part, fake_part, k=self.k, seed=self.seed)
        centers = getattr(datamodule, "centers", None)
        if centers is not None:
            metrics |= mode_coverage(fake, centers, datamodule.std)
        return metrics

    def image_metrics(
        self, real: Tensor, real_labels: Tensor, fake: Tensor, labels: Tensor | None, datamodule
    ) -> dict[str, float]:
        classifier = self.get_classifier(datamodule)
        # Held-out sets may be sorted by class: shuffle (with a fixed seed) before halving.
        order = torch.randperm(len(real), generator=torch.Generator().manual_seed(self.seed))
        real, real_labels = real[order], real_labels[order]
        real_features = self.features_of_real(classifier, real)
        fake_features = batched(classifier.features, fake)
        with torch.no_grad():
            predicted = classifier.head(fake_features).argmax(dim=1)
            real_predicted = classifier.head(real_features).argmax(dim=1)
        # Equal sample sizes on both sides, so that fd and fd_floor carry the same bias.
        half = min(len(real) // 2, len(fake))
        metrics = {
            "fd": frechet_distance(real_features[:half], fake_features[:half]),
            "fd_floor": frechet_distance(real_features[:half], real_features[half : 2 * half]),
            "class_entropy": class_entropy(predicted, datamodule.num_classes),
        }
        metrics |= prdc(real_features, fake_features, k=self.k, seed=self.seed)  # equal sizes
        if labels is not None:
            metrics["cond_acc"] = float((predicted == labels).float().mean())
            metrics["recall_class_min"] = least_class_recall(
                real_features, real_labels, fake_features, labels, k=self.k, seed=self.seed
            )
            # the classifier's accuracy on real held-out images: the ceiling for cond_acc
            metrics["real_acc"] = float((real_predicted == real_labels).float().mean())
        if self.inception_fid:
            metrics["inception_fid"] = inception_fid_score(real, fake)
        return metrics

    def features_of_real(self, classifier: torch.nn.Module, real: Tensor) -> Tensor:
        """The classifier's features of the held-out images, which are the same every epoch:
        computed the first time, then looked up (a third of an evaluation's time)."""
        cached = self.real_features
        if cached is not None and cached[0] is classifier and torch.equal(cached[1], real):
            return cached[2]
        features = batched(classifier.features, real)
        self.real_features = (classifier, real, features)
        return features

    def translation_metrics(self, datamodule, pl_module) -> dict[str, float]:
        """Image-to-image models on the held-out split, per direction d ('ab', 'ba'):
        `l1_d` and `psnr_d` against the true translation where the data knows it,
        `cycle_l1_<domain>` (there and back) for two-way models, and `label_kept_d` (the
        held-out label read back from the translated image by a digit classifier trained on
        the target domain) with `real_acc_<domain>` (that classifier on real images, the
        ceiling). One-way models (pix2pix) drop the `_ab` suffix; two-way ones also report
        `label_kept`, the mean over both directions."""
        a, b, labels_a, labels_b = (t.cpu() for t in datamodule.eval_set())
        held_out = {"ab": (a, labels_a, b, labels_b, "b"), "ba": (b, labels_b, a, labels_a, "a")}
        one_way = len(pl_module.directions) == 1
        metrics = {}
        for direction in pl_module.directions:
            source, labels, target, target_labels, domain = held_out[direction]
            source, labels = source[: self.num_samples], labels[: self.num_samples]
            translated = batched(lambda x, d=direction: pl_module.translate(x, d).cpu(), source)
            found = {}
            if datamodule.aligned_eval:
                found |= image_errors(translated, target[: self.num_samples])
            if datamodule.labelled:
                classifier = self.get_classifier(datamodule, domain)
                found["label_kept"] = accuracy(batched(classifier, translated), labels)
                metrics[f"real_acc_{domain}"] = accuracy(batched(classifier, target), target_labels)
            if one_way:
                metrics |= found
                continue
            back = "ba" if direction == "ab" else "ab"
            restored = batched(lambda x, d=back: pl_module.translate(x, d).cpu(), translated)
            metrics[f"cycle_l1_{direction[0]}"] = image_errors(restored, source)["l1"]
            metrics |= {f"{key}_{direction}": value for key, value in found.items()}
        if not one_way and "label_kept_ab" in metrics:
            metrics["label_kept"] = (metrics["label_kept_ab"] + metrics["label_kept_ba"]) / 2
        return metrics

    def pair_metrics(self, datamodule, a: Tensor, b: Tensor) -> dict[str, float]:
        """Models that draw pairs (CoGAN: a[i] and b[i] from one z). `pair_psnr`: the B image
        mapped back to domain A by the data's known relation (`datamodule.b_to_a`; left out
        where the data knows none) against the A image. On labelled data, per domain d, a
        digit classifier trained on that domain reads each image: `fd_d` (against the
        held-out images of d, equal numbers a side) and `class_entropy_d` of the samples;
        `pair_agree`, the share of pairs read as one class: by A's classifier, reading the
        A image and the B image mapped back, where the data knows the relation (one reader,
        so that only the pair is judged), else by each domain's own classifier."""
        metrics = {}
        b_to_a = getattr(datamodule, "b_to_a", None)
        if b_to_a is not None:
            metrics["pair_psnr"] = image_errors(b_to_a(b), a)["psnr"]
        if not datamodule.labelled:
            return metrics
        held_out = dict(zip(("a", "b"), datamodule.eval_set()[:2], strict=True))
        predicted = {}
        for domain, fake in (("a", a), ("b", b)):
            classifier = self.get_classifier(datamodule, domain)
            real_features = batched(classifier.features, held_out[domain].cpu())
            fake_features = batched(classifier.features, fake)
            with torch.no_grad():
                predicted[domain] = classifier.head(fake_features).argmax(dim=1)
            real_part, fake_part = equal_sizes(real_features, fake_features, self.seed)
            metrics[f"fd_{domain}"] = frechet_distance(real_part, fake_part)
            metrics[f"class_entropy_{domain}"] = class_entropy(
                predicted[domain], datamodule.num_classes
            )
        if b_to_a is not None:
            classifier = self.get_classifier(datamodule, "a")
            predicted["b"] = batched(classifier, b_to_a(b)).argmax(dim=1)
        metrics["pair_agree"] = float((predicted["a"] == predicted["b"]).float().mean())
        return metrics

    def stacked_modes(self, datamodule, pl_module) -> dict[str, float]:
        """Stacked MNIST's mode count (`metrics.stacked`): `modes` and `reverse_kl` of
        `datamodule.mode_samples` samples, each channel read by the digit classifier, beside
        `modes_real`, `reverse_kl_real` and `real_acc` (triples read right) of as many real
        held-out triples, the floor, computed once."""
        reader = self.get_classifier(datamodule)
        generator = torch.Generator().manual_seed(self.seed + 1)
        read = []
        for rows in torch.arange(datamodule.mode_samples).split(1000):
            labels = pl_module.resolve_labels(len(rows), None)
            fake = pl_module.sample(len(rows), labels, generator=generator).cpu()
            read.append(batched(reader.classes, fake))
        metrics = mode_metrics(torch.cat(read), reader.num_classes)
        if self.stacked_floor is None:
            self.stacked_floor = self.real_modes(datamodule, reader)
        return metrics | self.stacked_floor

    def real_modes(self, datamodule, reader: ChannelReader) -> dict[str, float]:
        """The mode count of the first `mode_samples` real held-out triples, read as the
        samples are, and the share of them read right."""
        read, truth = [], []
        for images, labels in datamodule.real_batches("val", 1000):
            read.append(batched(reader.classes, images))
            truth.append(labels)
            if sum(map(len, truth)) >= datamodule.mode_samples:
                break
        read, truth = (torch.cat(t)[: datamodule.mode_samples] for t in (read, truth))
        floor = mode_metrics(read, reader.num_classes)
        floor = {f"{key}_real": value for key, value in floor.items()}
        return floor | {"real_acc": float((read == truth).float().mean())}

    def get_classifier(self, datamodule, domain: str = "data"):
        """The digit classifier for the data (or for one domain of translation data); for
        stacked MNIST, one trained on its single digits that reads each channel."""
        if domain in self.classifiers:
            return self.classifiers[domain]
        if domain == "data" and hasattr(datamodule, "channel_digits"):
            found = channel_reader(datamodule, self.cache_dir, self.classifier_epochs)
        else:
            images, labels = (
                datamodule.training_sample() if domain == "data" else datamodule.domain_set(domain)
            )
            found = load_or_train_classifier(
                images.cpu(),
                labels.cpu(),
                datamodule.num_classes,
                self.cache_dir,
                epochs=self.classifier_epochs,
            )
        self.classifiers[domain], _, self.classifier_from_cache = found
        return self.classifiers[domain]


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())
