"""What genlab sends to TensorBoard beyond Lightning's scalars, and a faster event writer.

TensorBoard's writer (used by Lightning's `TensorBoardLogger` through
`torch.utils.tensorboard`) frames every record with a CRC-32C checksum that, without
TensorFlow installed, is computed in pure Python: about 3 ms for a 20 KB PNG, holding the
GIL on the writer's thread while the training loop waits for it (measured in
bench/overhead.py: the first step after each epoch's picture ran 10 to 20 ms late on a
2-core CPU). `use_fast_checksums` puts google-crc32c's C implementation in its place; the
event files stay byte-for-byte the same.
"""

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer import record_writer

from genlab.plotting import png_channels

try:
    import google_crc32c
except ImportError:  # a genlab dependency, but TensorBoard works without it
    google_crc32c = None


def masked_crc32c(data: bytes) -> int:
    """TensorFlow's masked CRC-32C of a record (the same value as TensorBoard's)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def use_fast_checksums() -> bool:
    """Make TensorBoard's record writer checksum with google-crc32c's C code, where that is
    installed and has its C extension (its pure-Python fallback is no faster than
    TensorBoard's own). True when in use."""
    if google_crc32c is None or google_crc32c.implementation != "c":
        return False
    record_writer.masked_crc32c = masked_crc32c
    return True


def log_png(trainer: L.Trainer, tag: str, png: bytes, shape: tuple[int, ...], step: int) -> None:
    """Send an encoded PNG to every TensorBoard logger of the trainer, as an image summary.
    (`add_image` would encode the picture again; it is encoded once for the files and here.)"""
    height, width = shape[:2]
    summary = Summary(
        value=[
            Summary.Value(
                tag=tag,
                image=Summary.Image(
                    height=height,
                    width=width,
                    colorspace=png_channels(png),
                    encoded_image_string=png,
                ),
            )
        ]
    )
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment._get_file_writer().add_summary(summary, global_step=step)
