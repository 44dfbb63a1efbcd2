"""Sampling time per image of the autoregressive models: PixelRNN, which carries its Row
LSTM state from row to row (a pixel costs one column of each layer), against PixelCNN, which
runs a forward pass over the rows so far for every pixel. Both are the recipes' nets
(hidden 32; PixelCNN 5 blocks, PixelRNN 4 layers), untrained: the time does not depend on
the weights. Each size is timed once after a warm-up chunk, in the same process.

    python bench/sampling.py                  # -> bench/results.md, section sampling-cpu
    python bench/sampling.py --device cuda    # the same on a GPU (section sampling-cuda)
    python bench/sampling.py --quick --out /tmp/sampling.md
"""

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch

from genlab.models.pixelcnn import PixelCNN
from genlab.models.pixelrnn import PixelRNN
from genlab.nets.pixelcnn import PixelCNNNet
from genlab.nets.pixelrnn import RowLSTMNet

sys.path.insert(0, str(Path(__file__).parent))
from overhead import machine, synchronize, write_section  # noqa: E402


def models(shape: tuple[int, int, int]) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    adam = partial(torch.optim.Adam)
    return {
        "PixelCNN": PixelCNN(PixelCNNNet(shape[0], hidden=32, num_blocks=5), adam, shape),
        "PixelRNN": PixelRNN(RowLSTMNet(shape[0], hidden=32, num_layers=4), adam, shape),
    }


def seconds_per_image(model, n: int, device: torch.device) -> float:
    model.sample_batch_size = n
    model.sample(n, generator=torch.Generator().manual_seed(1))  # warm-up
    synchronize(device)
    started = time.perf_counter()
    model.sample(n, generator=torch.Generator().manual_seed(0))
    synchronize(device)
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="8 x 8 images: a check, not a figure")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.md"))
    args = parser.parse_args()
    device = torch.device(args.device)
    size = 8 if args.quick else 28
    shape = (1, size, size)
    batches = (64, 1)
    nets = {name: model.to(device) for name, model in models(shape).items()}
    times = {
        (name, n): seconds_per_image(model, n, device)
        for name, model in nets.items()
        for n in batches
    }
    rows = [
        f"| {n} | {times['PixelCNN', n]:.4f} | {times['PixelRNN', n]:.4f} | "
        f"{times['PixelCNN', n] / times['PixelRNN', n]:.2f}x |"
        for n in batches
    ]
    text = "\n".join(
        [
            f"### Sampling: PixelRNN against PixelCNN ({args.device}, {size} x {size} images, "
            f"{time.strftime('%Y-%m-%d')})",
            "",
            f"{machine(device)}. `python bench/sampling.py"
            f"{' --device ' + args.device if args.device != 'cpu' else ''}`",
            "",
            "| images at once | PixelCNN s/image | PixelRNN s/image | PixelRNN faster by |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    write_section(Path(args.out), f"sampling-{device.type}", text)


if __name__ == "__main__":
    main()
