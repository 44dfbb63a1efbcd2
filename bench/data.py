"""A folder of image files: genlab's cached loader against torchvision's.

    python bench/data.py                       # 100,000 64x64 PNGs -> data-folder in results.md
    python bench/data.py --images 2000 --print # a quick look, results.md untouched

It writes a folder of `--images` PNG files (ten class folders of smooth random shapes) in a
temporary folder, then measures, each in a fresh process so that each peak RSS is its own:

- genlab, first run: `data=image_folder data.in_memory=false` decodes the folder into its
  uint8 cache (every CPU), then serves batches from it;
- genlab, second run: the cache is found; the time from the data module's setup to the first
  batch, steady images/s over a pass, peak RSS;
- torchvision: `ImageFolder` with `Resize`, `ToTensor`, `Normalize` to [-1, 1] and
  `DataLoader(num_workers=2, shuffle=True)`, the same batch size: time to the first batch,
  steady images/s, peak RSS of the main process and of its workers.

And the memory an in-memory set takes against its uint8 size, for mnist_mini and a
CIFAR-size set (50,000 32x32x3 images through the torchvision data module's path).
"""

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results.md"
BATCH = 64


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def write_images(job: tuple[Path, int, int]) -> None:
    """Images `start..stop` of the folder: a smooth gradient and a random rectangle."""
    from PIL import Image

    root, start, stop = job
    rng = np.random.default_rng(start)
    ramp = np.linspace(0, 1, 64)
    for i in range(start, stop):
        colour = rng.integers(0, 256, (2, 3))
        pixels = ramp[None, :, None] * colour[0] + (1 - ramp[:, None, None]) * colour[1]
        x0, y0 = rng.integers(0, 48, 2)
        pixels[y0 : y0 + 16, x0 : x0 + 16] = rng.integers(0, 256, 3)
        folder = root / f"class{i % 10}"
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:06d}.png")


def make_folder(root: Path, count: int) -> float:
    for k in range(10):
        (root / f"class{k}").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [(root, s, min(s + 1000, count)) for s in range(0, count, 1000)]
    with multiprocessing.get_context("spawn").Pool(len(os.sched_getaffinity(0))) as pool:
        pool.map(write_images, jobs)
    return time.perf_counter() - started


def steady_rate(loader, batches: int, skip: int = 5) -> tuple[float, float]:
    """(seconds to the first batch, images/s over the next `batches` after `skip`)."""
    started = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter() - started
    for _ in range(skip):
        next(iterator)
    started, seen = time.perf_counter(), 0
    for _, batch in zip(range(batches), iterator, strict=False):
        seen += len(batch[0])
    return first, seen / (time.perf_counter() - started)


def genlab_run(root: str, cache: str) -> dict:
    """One genlab run over the folder: setup (building the cache when absent), first batch,
    a pass of batches read from the cache file."""
    import torch

    from genlab.data.images import ImageFolderDataModule

    torch.set_num_threads(1)
    started = time.perf_counter()
    data = ImageFolderDataModule(
        root=root, channels=3, image_size=64, batch_size=BATCH, cache_dir=cache, in_memory=False
    )
    data.setup()
    setup = time.perf_counter() - started
    loader = data.train_dataloader()
    skip = min(5, len(loader) // 4)
    first, rate = steady_rate(loader, batches=len(loader) - 1 - skip, skip=skip)
    return {"setup_s": setup, "first_batch_s": setup + first, "images_per_s": rate}


def torchvision_run(root: str, batches: int) -> dict:
    import torch
    from torchvision import datasets, transforms

    torch.set_num_threads(1)
    started = time.perf_counter()
    dataset = datasets.ImageFolder(
        root,
        transforms.Compose(
            [
                transforms.Resize(64),
                transforms.ToTensor(),
                transforms.Normalize([0.5] * 3, [0.5] * 3),
            ]
        ),
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True
    )
    setup = time.perf_counter() - started
    skip = min(5, len(loader) // 4)
    first, rate = steady_rate(loader, batches=min(batches, len(loader) - 1 - skip), skip=skip)
    return {"setup_s": setup, "first_batch_s": setup + first, "images_per_s": rate}


class FakeCifar:
    """50,000 random 32x32x3 images in torchvision's CIFAR layout (N x H x W x C uint8)."""

    def __init__(self, root: str, train: bool, download: bool) -> None:
        n = 50_000 if train else 10_000
        self.data = np.random.default_rng(int(train)).integers(0, 256, (n, 32, 32, 3), np.uint8)
        self.targets = list(np.arange(n) % 10)


def memory_run(name: str) -> dict:
    """RSS taken by an in-memory set (setup and a pass of batches) against its uint8 size."""
    import torch

    from genlab.data.images import MnistMiniDataModule, TorchvisionDataModule

    torch.set_num_threads(1)
    before = rss_mb()
    if name == "mnist_mini":
        data = MnistMiniDataModule(batch_size=BATCH)
    else:
        data = TorchvisionDataModule(
            dataset=FakeCifar, root=".", channels=3, image_size=32, num_classes=10, batch_size=BATCH
        )
    data.setup()
    for _ in data.train_dataloader():
        pass
    stored = sum(t.nelement() * t.element_size() for t in (data.train_set[0], data.val_set[0]))
    uint8 = sum(t.nelement() for t in (data.train_set[0], data.val_set[0]))
    return {
        "uint8_mb": uint8 / 2**20,
        "stored_mb": stored / 2**20,
        "rss_growth_mb": rss_mb() - before,
    }


def child(kind: str, *args: str) -> dict:
    """Run one measurement in a fresh interpreter; its figures and peak RSS."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_child(kind: str, args: list[str]) -> None:
    if kind == "genlab":
        figures = genlab_run(*args)
    elif kind == "torchvision":
        figures = torchvision_run(args[0], int(args[1]))
    else:
        figures = memory_run(kind)
    figures |= {"peak_rss_mb": rss_mb(), "children_peak_rss_mb": children_rss_mb()}
    print(json.dumps(figures))


def table(count: int, made: float, first: dict, second: dict, vision: dict, memory: dict) -> str:
    speed = second["images_per_s"] / vision["images_per_s"]
    lines = [
        f"{count:,} PNG files of 64x64 in 10 class folders (written in {made:.0f} s), batch {BATCH}, "
        f"{len(os.sched_getaffinity(0))} CPUs, {time.strftime('%Y-%m-%d')}.",
        "",
        "| workload | setup s | first batch s | images/s | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for name, row in (
        ("genlab, first run (builds the cache)", first),
        ("genlab, second run (cache found, read from disk)", second),
        ("torchvision ImageFolder + DataLoader(num_workers=2)", vision),
    ):
        lines.append(
            f"| {name} | {row['setup_s']:.2f} | {row['first_batch_s']:.2f} | "
            f"{row['images_per_s']:,.0f} | {row['peak_rss_mb']:,.0f} |"
        )
    lines += [
        "",
        f"Steady images/s, genlab's loader from the cache file against torchvision's: **{speed:.1f}x**. "
        f"Peak RSS is the main process's (torchvision's two workers each peaked at "
        f"{vision['children_peak_rss_mb']:,.0f} MB more, shared pages counted).",
        "",
        "| in-memory set | uint8 size MB | stored MB | stored / uint8 | RSS growth MB (setup and a pass) | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in memory.items():
        lines.append(
            f"| {name} | {row['uint8_mb']:.1f} | {row['stored_mb']:.1f} | "
            f"{row['stored_mb'] / row['uint8_mb']:.2f} | {row['rss_growth_mb']:.0f} | "
            f"{row['peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def record(section: str, text: str) -> None:
    """Rewrite `<!-- section -->` ... `<!-- /section -->` in results.md (appended if absent)."""
    start, end = f"<!-- {section} -->", f"<!-- /{section} -->"
    content = RESULTS.read_text()
    block = f"{start}\n{text}\n{end}"
    if start in content:
        head, rest = content.split(start, 1)
        content = head + block + rest.split(end, 1)[1]
    else:
        content = content.rstrip("\n") + f"\n\n## Data: an image folder\n\n{block}\n"
    RESULTS.write_text(content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--vision-batches", type=int, default=300)
    parser.add_argument("--print", action="store_true", help="print only; leave results.md")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args.child[0], args.child[1:])
    with tempfile.TemporaryDirectory(prefix="genlab-bench-data-") as folder:
        root, cache = Path(folder) / "images", Path(folder) / "cache"
        made = make_folder(root, args.images)
        first = child("genlab", str(root), str(cache))
        second = child("genlab", str(root), str(cache))
        vision = child("torchvision", str(root), str(args.vision_batches))
    memory = {name: child(name) for name in ("mnist_mini", "cifar-size")}
    text = table(args.images, made, first, second, vision, memory)
    print(text)
    if not args.print:
        record("data-folder", text)


if __name__ == "__main__":
    main()
