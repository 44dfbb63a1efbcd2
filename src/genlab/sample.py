"""`genlab-sample`: checkpoint -> samples.

    genlab-sample ckpt=outputs/<date>/<time>/checkpoints/last.ckpt n=1000 out=samples/
    genlab-sample ckpt=... labels=3          # conditional models: every sample of class 3
    genlab-sample ckpt=... labels=[0,1,2]    # cycled over the samples

Writes OUT/samples.pt, a dict {"samples": float tensor N x D (points) or N x C x H x W
(images in [-1, 1]), "labels": long tensor N or None}, and OUT/samples.png.
"""

import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from genlab.build import instantiate_model
from genlab.checkpoints import check_compatible, load_checkpoint
from genlab.contract import Sampler
from genlab.errors import ConfigError, require, user_error
from genlab.plotting import picture, save_png

DEFAULTS = {"ckpt": None, "n": 1000, "out": "samples", "labels": None, "seed": 0, "device": "cpu"}


def parse_args(argv: list[str]) -> dict:
    try:
        overrides = OmegaConf.from_dotlist(argv)
    except OmegaConfBaseException as error:
        raise ConfigError(f"cannot parse {argv}: {error}; write key=value, e.g. n=1000") from None
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]}; the options are {', '.join(DEFAULTS)}")
    args = DEFAULTS | OmegaConf.to_container(overrides)
    require(
        args["ckpt"] is not None, "pass the checkpoint: genlab-sample ckpt=PATH [n=1000] [out=DIR]"
    )
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


def sample(args: dict) -> Path:
    model = load_model(args["ckpt"], args["device"])
    require(
        isinstance(model, Sampler),
        "this checkpoint holds an image-to-image model (pix2pix, CycleGAN), which translates "
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
    per_row = model.num_classes if model.conditional and samples.dim() == 4 else 8
    save_png(picture(samples, labels_cpu, title=f"{n} samples", nrow=per_row), out / "samples.png")
    return out


def main(argv: list[str] | None = None) -> None:
    try:
        out = sample(parse_args(sys.argv[1:] if argv is None else argv))
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        print(f"genlab-sample: error: {str(error).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {out / 'samples.pt'} and {out / 'samples.png'}")


if __name__ == "__main__":
    main()
