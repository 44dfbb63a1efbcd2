"""`genlab-sample`: checkpoint -> samples.

    genlab-sample ckpt=outputs/<date>/<time>/checkpoints/last.ckpt n=1000 out=samples/
    genlab-sample ckpt=... labels=3          # conditional models: every sample of class 3
    genlab-sample ckpt=... labels=[0,1,2]    # cycled over the samples

Writes OUT/samples.pt, a dict {"samples": float tensor N x D (points) or N x C x H x W
(images in [-1, 1]), "labels": long tensor N or None}, and OUT/samples.png: a scatter of
every point, or a near-square grid of the first 100 images at most, each column one class
where the labels cycle through the classes.
"""

import math
from pathlib import Path

import torch

from genlab.build import instantiate_model
from genlab.checkpoints import check_compatible, load_checkpoint
from genlab.contract import Sampler
from genlab.errors import require
from genlab.options import parse_options, run_script
from genlab.plotting import picture, save_png

DEFAULTS = {"ckpt": None, "n": 1000, "out": "samples", "labels": None, "seed": 0, "device": "cpu"}
GRID_SIZE = 100  # images in samples.png at most (samples.pt holds them all)


def parse_args(argv: list[str]) -> dict:
    args = parse_options(argv, DEFAULTS, "genlab-sample ckpt=PATH [n=1000] [out=DIR]")
    require(
        isinstance(args["n"], int) and args["n"] >= 1,
        f"n must be a whole number >= 1 (got {args['n']})",
    )
    return args


def load_model(path: str, device: str = "cpu"):
    checkpoint = load_checkpoint(path)
    model, _ = instantiate_model(checkpoint["genlab"]["model"])
    check_compatible(checkpoint, model, path)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


def grid_layout(n: int, cycle: int) -> tuple[int, int]:
    """How many of `n` images samples.png shows, and how many a row: near square, at most
    GRID_SIZE. When the labels repeat every `cycle` samples (0, 1, ..., 9, 0, 1, ...) and
    the full grid's row can hold a whole cycle, the row length is a multiple of it, so that
    each column is one class."""
    side = math.ceil(math.sqrt(min(n, GRID_SIZE)))
    classes_fit = 1 < cycle <= math.isqrt(GRID_SIZE)
    per_row = cycle * max(1, round(side / cycle)) if classes_fit else side
    shown = n if n <= GRID_SIZE else per_row * max(1, GRID_SIZE // per_row)
    return shown, per_row


def label_cycle(labels: torch.Tensor | None) -> int:
    """The shortest period p with labels[i] == labels[i % p] over the first GRID_SIZE labels
    (1 for unlabelled samples)."""
    if labels is None:
        return 1
    labels = labels[:GRID_SIZE]
    for period in range(1, len(labels) + 1):
        if bool((labels == labels[torch.arange(len(labels)) % period]).all()):
            return period
    return len(labels)


def sample(args: dict) -> tuple[Path, str]:
    """Draw the samples, write OUT/samples.pt and OUT/samples.png; return OUT and what the
    picture shows ("100 of 1000 samples")."""
    model = load_model(args["ckpt"], args["device"])
    require(
        isinstance(model, Sampler),
        "this checkpoint holds an image-to-image model (pix2pix, CycleGAN, UNIT), which translates "
        "images rather than sample them; pass a generative model's checkpoint",
    )
    n = args["n"]
    if args["labels"] is not None:
        require(model.conditional, "this model is unconditional: drop labels=")
        labels = torch.as_tensor(args["labels"]).long().flatten()
        labels = labels.repeat(-(-n // len(labels)))[:n]
    else:
        labels = None
    labels = model.resolve_labels(n, labels)
    generator = torch.Generator().manual_seed(int(args["seed"]))
    samples = model.sample(n, labels, generator=generator).cpu()

    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    labels_cpu = None if labels is None else labels.cpu()
    torch.save({"samples": samples, "labels": labels_cpu}, out / "samples.pt")
    if samples.dim() == 2:  # points: every one in the scatter
        shown, per_row = n, 1
    else:  # images: a near-square grid of the first GRID_SIZE at most
        shown, per_row = grid_layout(n, label_cycle(labels_cpu))
    title = f"{n} samples" if shown == n else f"{shown} of {n} samples"
    image = picture(
        samples[:shown],
        None if labels_cpu is None else labels_cpu[:shown],
        title=title,
        nrow=per_row,
    )
    save_png(image, out / "samples.png")
    return out, title


def main(argv: list[str] | None = None) -> None:
    out, shown = run_script("genlab-sample", lambda args: sample(parse_args(args)), argv)
    print(f"wrote {out / 'samples.pt'} and {out / 'samples.png'} ({shown})")


if __name__ == "__main__":
    main()
