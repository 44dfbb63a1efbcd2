"""`genlab-eval`: a checkpoint's final scores, with the literature's protocol.

    genlab-eval ckpt=outputs/<date>/<time>/checkpoints/last.ckpt      # n=50000, fid kid prdc
    genlab-eval ckpt=<a stacked MNIST run>/checkpoints/last.ckpt      # n=26000, + modes
    genlab-eval ckpt=... n=10000 metrics=[fid,kid] features=classifier device=cuda

Draws n samples and compares their features with the TRAINING set's reference statistics:
FID (Fréchet distance of the Gaussian fits), KID (100 subsets of 1,000, mean and std) and
precision, recall, density and coverage (k=5, equal sample sizes). The reference statistics
are cached in DATA_DIR/references/, one file per training-set content and feature extractor,
so a second evaluation does not go over the training set again. Prints a table and writes
eval.json beside the checkpoint (or to out=PATH).

Features (`features=auto`): torchmetrics' Inception when its weights are in torch.hub's
cache, else the digit classifier trained on the training split (cached in
DATA_DIR/classifiers/, shared with the per-epoch metrics).

Stacked MNIST (`evaluate_stacked`): `modes` and `reverse_kl`, the digit triples of the
samples read one channel at a time, join the default metrics, n defaults to the papers'
26,000, and the features are the digit classifier's of each channel, side by side.
"""

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import Tensor
from tqdm import tqdm

from genlab.checkpoints import load_checkpoint
from genlab.contract import PairSampler, Sampler
from genlab.errors import DataError, require
from genlab.evaluate_stacked import (
    MODE_SAMPLES,
    channel_features,
    check_modes_asked,
    is_stacked,
    mode_scores,
)
from genlab.metrics import prdc
from genlab.metrics.distances import frechet_from_stats
from genlab.metrics.features import (
    FeatureExtractor,
    classifier_extractor,
    inception_extractor,
    inception_missing,
)
from genlab.metrics.inception import INCEPTION_WEIGHTS, inception_weights_path
from genlab.metrics.kid import kid
from genlab.metrics.reference import (
    Reference,
    compute_reference,
    gaussian_fit,
    load_reference,
    reference_path,
    save_reference,
)
from genlab.options import parse_options, run_script
from genlab.sample import load_model

DEFAULTS = {
    "ckpt": None,
    "n": None,  # 50000; 26000 on stacked MNIST (the papers' mode count)
    "metrics": None,  # fid kid prdc; and modes on stacked MNIST
    "features": "auto",
    "out": None,  # eval.json beside the checkpoint
    "batch_size": 250,
    "seed": 0,
    "device": "cpu",
    "data_dir": None,  # like paths.data_dir: $GENLAB_DATA, else data
}
DISTANCES = ("fid", "kid", "prdc")  # against the training set's reference statistics
METRICS = (*DISTANCES, "modes")
SAMPLES = 50_000
FEATURES = ("auto", "inception", "classifier")
REFERENCE_KEEP = 50_000  # training features kept for KID and PRDC (all of a smaller set)
REFERENCE_SEED = 0  # fixed, so that every evaluation of a dataset shares one cache file
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # torch-fidelity's defaults
PRDC_K = 5
PRDC_MAX = 10_000  # samples a side: PRDC's pairwise distances grow with the square


def parse_args(argv: list[str]) -> dict:
    args = parse_options(argv, DEFAULTS, "genlab-eval ckpt=PATH [n=50000]")
    check_values(args)
    return args


def check_values(args: dict) -> None:
    n, metrics = args["n"], args["metrics"]
    require(
        n is None or (isinstance(n, int) and n >= 2), f"n must be a whole number >= 2 (got {n})"
    )
    if metrics is not None:
        metrics = args["metrics"] = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in metrics if m not in METRICS]
        require(
            bool(metrics) and not unknown,
            f"unknown metric {unknown[0] if unknown else '(none given)'}; "
            f"the metrics are {', '.join(METRICS)}, e.g. metrics=[fid,kid]",
        )
    require(
        "prdc" not in (metrics or ()) or n is None or n > PRDC_K,
        f"prdc needs n > {PRDC_K} (its {PRDC_K}th nearest neighbour); got n={n}",
    )
    require(
        args["features"] in FEATURES,
        f"features must be one of {', '.join(FEATURES)} (got {args['features']})",
    )
    batch_size = args["batch_size"]
    require(
        isinstance(batch_size, int) and batch_size >= 1,
        f"batch_size must be a whole number >= 1 (got {batch_size})",
    )
    seed = args["seed"]
    require(isinstance(seed, int), f"seed must be a whole number (got {seed!r})")
    check_device(str(args["device"]))


def check_device(device: str) -> None:
    require(
        device == "cpu" or device.startswith("cuda"),
        f"device must be cpu or cuda (got {device})",
    )
    require(
        device == "cpu" or torch.cuda.is_available(),
        "device=cuda but no GPU is visible; use device=cpu",
    )


def settle_defaults(args: dict, datamodule) -> None:
    """The options that the data decides when left out: n (the papers' 26,000 on stacked
    MNIST, else 50,000) and metrics (modes added on stacked MNIST, refused elsewhere)."""
    stacked = is_stacked(datamodule)
    if args["n"] is None:
        args["n"] = MODE_SAMPLES if stacked else SAMPLES
    if args["metrics"] is None:
        args["metrics"] = [*DISTANCES, "modes"] if stacked else list(DISTANCES)
    check_modes_asked(args["metrics"], datamodule)


def load_sampler(path: str, device: str) -> tuple[torch.nn.Module, dict]:
    """The checkpoint's model and what the run recorded (its data config and choices)."""
    model = load_model(path, device)
    require(
        isinstance(model, Sampler),
        "this checkpoint holds an image-to-image model (pix2pix, CycleGAN, UNIT), which translates "
        "images rather than sample them; its l1, psnr and label_kept are the per-epoch "
        "eval/ metrics of the run (metrics.json, TensorBoard)",
    )
    require(
        not isinstance(model, PairSampler),
        "this checkpoint holds a CoGAN, which draws pairs of images in two domains; its "
        "pair_psnr, pair_agree and per-domain fd are the per-epoch eval/ metrics of the run "
        "(metrics.json, TensorBoard)",
    )
    return model, load_checkpoint(path)["genlab"]


def load_data(data_cfg: dict):
    """The run's datamodule from its saved config, with its splits loaded."""
    datamodule = instantiate(data_cfg, _convert_="all")
    datamodule.setup()
    require(
        len(datamodule.shape) == 3,
        "genlab-eval scores images, and this run's data are points; their fd, precision, "
        "recall, density and coverage are the per-epoch eval/ metrics of the run",
        DataError,
    )
    return datamodule


def progress(description: str, total: int | None = None) -> tqdm:
    """A progress bar on stderr, counting images; off when stderr is not a terminal."""
    return tqdm(desc=description, total=total, unit="img", unit_scale=True, disable=None)


def choose_features(args: dict, datamodule, cache_dir: Path) -> FeatureExtractor:
    """The extractor `features=` asks for; `auto` takes Inception when it is here (stacked
    MNIST: the digit classifier's features of each channel)."""
    if is_stacked(datamodule):
        return channel_features(args["features"], datamodule, cache_dir, args["device"])
    missing = inception_missing()
    asked = name = args["features"]
    if name == "auto":
        name = "inception" if missing is None or not datamodule.labelled else "classifier"
    if name == "inception":
        if datamodule.labelled:
            reason, fallback = "", ", or pass features=classifier"
        else:
            reason, fallback = "the data has no labels for the digit classifier, and ", ""
        require(missing is None, f"features={asked}: {reason}{missing}{fallback}")
        return inception_extractor(args["device"])
    require(
        datamodule.labelled,
        f"features=classifier needs labelled data and this data has none; use features="
        f"inception, with {INCEPTION_WEIGHTS} copied into {inception_weights_path().parent}",
        DataError,
    )
    images, labels = datamodule.training_sample()  # as the per-epoch metrics
    return classifier_extractor(
        images, labels, datamodule.num_classes, cache_dir / "classifiers", args["device"]
    )


def training_features(datamodule, extractor: FeatureExtractor, batch_size: int) -> Iterator:
    with progress("reference") as bar:
        for images, _ in datamodule.real_batches("train", batch_size):
            yield extractor.function(images)
            bar.update(len(images))


def reference_statistics(
    datamodule, extractor: FeatureExtractor, cache_dir: Path, batch_size: int
) -> tuple[Reference, Path, bool]:
    """The training set's reference statistics: (reference, cache file, read from it)."""
    path = reference_path(
        cache_dir / "references", datamodule.content_key("train"), extractor.identity
    )
    cached = load_reference(path)
    if cached is not None:
        return cached, path, True
    chunks = training_features(datamodule, extractor, batch_size)
    reference = compute_reference(chunks, REFERENCE_KEEP, seed=REFERENCE_SEED)
    save_reference(reference, path)
    return reference, path, False


@torch.no_grad()
def generated_features(model, extractor: FeatureExtractor, args: dict) -> Tensor:
    """The features of n samples, drawn batch by batch from the seed."""
    n, batch_size = args["n"], args["batch_size"]
    generator = torch.Generator().manual_seed(int(args["seed"]))
    labels = model.resolve_labels(n, None)
    features = []
    with progress("samples", total=n) as bar:
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            batch_labels = None if labels is None else labels[start : start + count]
            features.append(extractor.function(model.sample(count, batch_labels, generator)))
            bar.update(count)
    return torch.cat(features)


def scores(
    metrics: list[str], reference: Reference | None, fake: Tensor, seed: int
) -> tuple[dict, dict]:
    """The distances' values, and the settings they were computed with."""
    values, settings = {}, {}
    if "fid" in metrics:
        values["fid"] = frechet_from_stats(
            reference.mean, reference.covariance, *gaussian_fit(fake)
        )
    if "kid" in metrics:
        values["kid"], values["kid_std"], size = kid(
            reference.features, fake, KID_SUBSETS, KID_SUBSET_SIZE, seed=seed
        )
        settings |= {"kid_subsets": KID_SUBSETS, "kid_subset_size": size}
    if "prdc" in metrics:
        count = min(len(fake), len(reference.features), PRDC_MAX)
        found = prdc(reference.features[:count], fake[:count], k=PRDC_K)
        found.pop("prdc_n", None)  # `count`, a setting rather than a score
        values |= found
        settings |= {"prdc_k": PRDC_K, "prdc_samples": count}
    return values, settings


def reference_for(
    datamodule, extractor: FeatureExtractor, cache_dir: Path, batch_size: int
) -> tuple[Reference, dict]:
    """The training set's reference statistics, and what eval.json says of them."""
    started = time.perf_counter()
    reference, path, from_cache = reference_statistics(datamodule, extractor, cache_dir, batch_size)
    took = f"computed in {time.perf_counter() - started:.1f} s, cached in"
    say(
        f"reference: {reference.count} training images, {'read from' if from_cache else took} {path}"
    )
    return reference, {
        "split": "train",
        "images": reference.count,
        "kept": len(reference.features),
        "cache": str(path),
        "from_cache": from_cache,
    }


def evaluate(args: dict) -> dict:
    """Score the checkpoint, write eval.json; return what it holds."""
    model, record = load_sampler(args["ckpt"], args["device"])
    datamodule = load_data(record["data"])
    settle_defaults(args, datamodule)
    cache_dir = Path(args["data_dir"] or os.environ.get("GENLAB_DATA", "data"))
    extractor = choose_features(args, datamodule, cache_dir)
    model_name, data_name = names(record)
    say(f"{model_name} on {data_name}: {args['n']} samples, {extractor.name} features")
    reference, about_reference = None, None  # not needed for the mode count alone
    if set(args["metrics"]) & set(DISTANCES):
        reference, about_reference = reference_for(
            datamodule, extractor, cache_dir, args["batch_size"]
        )
    started = time.perf_counter()
    fake = generated_features(model, extractor, args)
    say(f"samples: {args['n']} drawn and featurized in {time.perf_counter() - started:.1f} s")
    values, settings = scores(args["metrics"], reference, fake, int(args["seed"]))
    if "modes" in args["metrics"]:
        values |= mode_scores(extractor, fake)
    result = {
        "checkpoint": str(Path(args["ckpt"]).resolve()),
        "model": model_name,
        "data": data_name,
        "features": extractor.name,
        "feature_extractor": extractor.identity,
        "feature_dim": extractor.dim,
        "n": args["n"],
        "seed": args["seed"],
        "reference": about_reference,
        "metrics": values,
        "settings": settings,
    }
    return write_result(result, args)


def names(record: dict) -> tuple[str, str]:
    """The model's and the data's config names (their class names for older checkpoints)."""
    choices = record.get("choices", {})
    return tuple(
        choices.get(key) or str(record[key].get("_target_", "")).rsplit(".", 1)[-1]
        for key in ("model", "data")
    )


def write_result(result: dict, args: dict) -> dict:
    """eval.json at out= (beside the checkpoint by default); the result with its path."""
    out = Path(args["out"]) if args["out"] else Path(args["ckpt"]).parent / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result | {"out": str(out)}


def table(result: dict) -> str:
    """The metrics as an aligned two-column table, headed by the features and sample sizes."""
    values = result["metrics"]
    rows = [(name, cell(name, values)) for name in values if name != "kid_std"]
    header = f"{result['features']} features: {result['n']} samples"
    if result["reference"] is not None:
        header += f" against {result['reference']['images']} training images"
    width = max(len(name) for name, _ in rows)
    lines = [header, f"{'metric':<{width}}  value"]
    lines += [f"{name:<{width}}  {text}" for name, text in rows]
    return "\n".join(lines)


def cell(name: str, values: dict) -> str:
    """One metric's value as the table shows it: kid with its std, modes as a count."""
    if name == "kid":
        return f"{values['kid']:.6f} ± {values['kid_std']:.6f}"
    return f"{values[name]:.0f}" if name == "modes" else f"{values[name]:.4f}"


def say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> None:
    result = run_script("genlab-eval", lambda args: evaluate(parse_args(args)), argv)
    print(table(result))
    print(f"wrote {result['out']}")


if __name__ == "__main__":
    main()
