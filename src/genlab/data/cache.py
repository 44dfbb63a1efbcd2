"""A folder of image files decoded once, in parallel, into one uint8 file.

`cached_folder(files, decoding, cache_dir)` returns the cache for these files, building it
first when there is none: worker processes decode the files (with a progress bar) and the
main process writes their pixels into `images.npy` (N x C x H x W uint8, numpy's format),
beside `info.json` (which files did not decode, and why). Later runs read the file
(`genlab.data.disk`).

- The cache's name is a hash of the file list, each file's size and modification time, and
  how the files are decoded (channels, image size, which half): a changed folder gets a new
  cache, an unchanged one opens in a fraction of a second.
- It is built in a temporary folder and renamed into place: a run killed while building
  (SIGKILL included) leaves no cache that a later run trusts. A lock file beside it makes
  runs that want the same cache at once (DDP ranks, a sweep's jobs) wait for the one that
  builds it, then use it.
- Files that do not decode (truncated, not an image) keep a row of zeros and are marked in
  `kept.npy`; the data modules leave them out.

This module needs numpy and Pillow only (and genlab.locks), so that its workers start fast.
"""

import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from genlab.locks import alive

FORMAT = 1  # bump when the layout of a cache changes: older caches are then rebuilt
CHUNK = 256  # files a worker decodes per task
IN_PROCESS = 512  # folders this small are decoded without worker processes


@dataclass(frozen=True)
class Decoding:
    """How a file becomes pixels: `channels` (1 grey, 3 RGB), resized (bilinear) to
    `image_size` squared, after taking the left (`part=0`) or right (`part=1`) half of a
    side-by-side A|B image when `part` is set; `binarize`: pixels above half intensity
    become 255, the rest 0."""

    channels: int
    image_size: int
    part: int | None = None
    binarize: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)


def decode(path: str | Path, decoding: Decoding) -> np.ndarray:
    """One image file as a C x H x W uint8 array; any mode (RGBA, P, L, CMYK) is converted."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "P":  # a palette, maybe with transparency: through RGBA, as PIL asks
            image = image.convert("RGBA")
        image = image.convert("L" if decoding.channels == 1 else "RGB")
        if decoding.part is not None:
            half = image.width // 2
            image = image.crop((decoding.part * half, 0, (decoding.part + 1) * half, image.height))
        image = image.resize((decoding.image_size, decoding.image_size), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
    if decoding.binarize:
        pixels = np.where(pixels > 127, 255, 0).astype(np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def decode_chunk(paths: list[str], decoding: Decoding) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode `paths` into one array; a file that fails gives zeros and (its place, why)."""
    pixels = np.zeros((len(paths), *decoding.shape), dtype=np.uint8)
    failures = []
    for i, path in enumerate(paths):
        try:
            pixels[i] = decode(path, decoding)
        except Exception as error:  # noqa: BLE001 - any file that does not decode is skipped
            first_line = (str(error).splitlines() or [""])[0][:80]
            failures.append((i, f"{type(error).__name__}: {first_line}"))
    return pixels, failures


@dataclass
class Cache:
    """A built cache: `folder` holds images.npy, kept.npy and info.json."""

    folder: Path
    size: int
    kept: np.ndarray  # bool per file: decoded
    failures: list[tuple[str, str]]  # (file, why) for each file that did not decode
    built: bool  # built by this call (False: found)

    @property
    def images_file(self) -> Path:
        return self.folder / "images.npy"


def cache_key(files: list[Path], decoding: Decoding) -> str:
    """A hash of the files (names, sizes, modification times) and of how they are decoded."""
    digest = hashlib.sha256(json.dumps([FORMAT, asdict(decoding)]).encode())
    for path in map(os.path.abspath, files):
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def cached_folder(
    files: list[Path],
    decoding: Decoding,
    cache_dir: str | Path,
    workers: int | None = None,
    describe: str = "images",
) -> Cache:
    """The cache of `files` decoded as `decoding`, built first when there is none."""
    final = Path(cache_dir) / f"images-{cache_key(files, decoding)}"
    if (final / "info.json").is_file():
        return read_cache(final, built=False)
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # whoever builds it holds this; the others wait
        if (final / "info.json").is_file():
            return read_cache(final, built=False)
        remove_abandoned_builds(final)
        building = final.with_name(
            f"{final.name}.building-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        building.mkdir()
        try:
            build(files, decoding, building, workers, describe)
            building.rename(final)  # atomic: the cache appears complete or not at all
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return read_cache(final, built=True)


def read_cache(folder: Path, built: bool) -> Cache:
    info = json.loads((folder / "info.json").read_text())
    return Cache(
        folder=folder,
        size=info["size"],
        kept=np.load(folder / "kept.npy"),
        failures=[tuple(item) for item in info["failures"]],
        built=built,
    )


def remove_abandoned_builds(final: Path) -> None:
    """Temporary folders of this cache left by runs on this host that no longer exist
    (called under the cache's lock: no live build of it can be running here)."""
    prefix = f"{final.name}.building-{socket.gethostname()}-"
    for folder in final.parent.glob(f"{final.name}.building-*"):
        pid = folder.name[len(prefix) :].split("-")[0]
        if folder.name.startswith(prefix) and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def build(
    files: list[Path], decoding: Decoding, folder: Path, workers: int | None, describe: str
) -> None:
    """Decode every file into `folder/images.npy`, in worker processes, then write the
    marks and info: the last files written, so a folder with info.json is complete."""
    images = folder / "images.npy"
    shape = (len(files), *decoding.shape)
    header = np.lib.format.open_memmap(images, mode="w+", dtype=np.uint8, shape=shape)
    offset, row = header.offset, int(np.prod(decoding.shape))
    del header  # the file exists at its full size; rows are written below
    kept = np.ones(len(files), dtype=bool)
    failures: list[tuple[str, str]] = []
    started = time.perf_counter()
    with open(images, "r+b") as out:
        for start, pixels, failed in decoded_chunks(files, decoding, workers, describe):
            os.pwrite(out.fileno(), pixels.tobytes(), offset + start * row)
            for i, why in failed:
                kept[start + i] = False
                failures.append((str(Path(*files[start + i].parts[-2:])), why))
        out.flush()
        os.fsync(out.fileno())
    np.save(folder / "kept.npy", kept)
    info = {
        "size": len(files),
        "shape": list(decoding.shape),
        "failures": sorted(failures),
        "seconds": round(time.perf_counter() - started, 2),
    }
    (folder / "info.json").write_text(json.dumps(info, indent=1))


def decoded_chunks(files: list[Path], decoding: Decoding, workers: int | None, describe: str):
    """(start, pixels, failures) for every CHUNK files, from worker processes, with a
    progress bar on a terminal."""
    from tqdm import tqdm

    paths = [str(p) for p in files]
    starts = range(0, len(paths), CHUNK)
    workers = len(os.sched_getaffinity(0)) if workers is None else workers
    progress = tqdm(total=len(paths), desc=f"decoding {describe}", unit="img", disable=None)
    with progress:
        if workers <= 1 or len(paths) <= IN_PROCESS:
            for start in starts:
                pixels, failed = decode_chunk(paths[start : start + CHUNK], decoding)
                progress.update(len(pixels))
                yield start, pixels, failed
            return
        # forked like torch's DataLoader workers: they start at once and never import the
        # caller's script again (a spawned worker would run an unguarded script anew)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        try:
            jobs = {
                pool.submit(decode_chunk, paths[start : start + CHUNK], decoding): start
                for start in starts
            }
            for job in as_completed(jobs):
                start = jobs.pop(job)  # a finished future keeps its pixels while referenced
                pixels, failed = job.result()
                progress.update(len(pixels))
                yield start, pixels, failed
        finally:  # on an error (a full disk), stop at once rather than decode the rest
            pool.shutdown(cancel_futures=True)
