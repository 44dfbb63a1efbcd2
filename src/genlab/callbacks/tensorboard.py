"""What genlab sends to TensorBoard beyond Lightning's scalars: the encoded pictures."""

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary

from genlab.plotting import png_channels


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
        writer = logger.experiment if isinstance(logger, TensorBoardLogger) else None
        if writer is not None and writer.file_writer is not None:  # None once closed
            writer.file_writer.add_summary(summary, global_step=step)
