"""How genlab's DCGAN step time grows with the batch size and the image size, on this machine.

python bench/scaling.py                 # -> the "scaling" section of bench/results.md
python bench/scaling.py --steps 6       # quicker, noisier
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch  # noqa: E402
from overhead import genlab_round, machine, plan, write_section  # noqa: E402

BATCH_SIZES = [32, 64, 128, 256, 512, 1024]
IMAGE_SIZES = [28, 32, 64]


def step_time(image_size: int, batch_size: int, steps: int) -> float:
    """Seconds per genlab DCGAN step (one D and one G update) on mnist_mini."""
    overrides = [
        "model=dcgan", "data=mnist_mini", f"data.image_size={image_size}",
        f"data.batch_size={batch_size}",
    ]  # fmt: skip
    batches, epochs = plan(overrides, steps)
    warmup = min(2, batches * epochs // 2)
    return 1.0 / genlab_round(overrides, batches, epochs, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="steps per measurement")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.md"))
    args = parser.parse_args()
    lines = [
        "| image size | batch size | ms per step | ms per image |",
        "|---|---|---|---|",
    ]
    cases = [(32, b) for b in BATCH_SIZES] + [(s, 64) for s in IMAGE_SIZES if s != 32]
    for image_size, batch_size in cases:
        seconds = step_time(image_size, batch_size, args.steps)
        row = f"| {image_size} | {batch_size} | {seconds * 1000:.0f} | {seconds * 1000 / batch_size:.2f} |"
        print(row, flush=True)
        lines.append(row)
    header = (
        f"DCGAN (width 64) on mnist_mini, genlab's loop, {machine(torch.device('cpu'))}.\n"
        f"Command: `python bench/scaling.py {' '.join(sys.argv[1:])}`.\n"
    )
    write_section(Path(args.out), "scaling-cpu", header + "\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
