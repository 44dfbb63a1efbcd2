"""What genlab sends to the experiment trackers beyond Lightning's scalars: the encoded
pictures, to TensorBoard, MLflow and Weights & Biases."""

import tempfile
from pathlib import Path, PurePosixPath

import lightning as L
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger
from tensorboard.compat.proto.summary_pb2 import Summary

from genlab.plotting import png_channels


def log_png(trainer: L.Trainer, tag: str, png: bytes, shape: tuple[int, ...], step: int) -> None:
    """Send an encoded PNG (`step`: the epoch) to every logger of the trainer that shows
    pictures: TensorBoard as an image summary under `tag`; MLflow as the artifact
    `<tag>_<step>.png` (`samples/grid_004.png`); W&B as an image under `tag`, captioned with
    the epoch."""
    log_tensorboard(trainer, tag, png, shape, step)
    trackers = [lg for lg in trainer.loggers if isinstance(lg, (MLFlowLogger, WandbLogger))]
    if not trackers:
        return
    tag_path = PurePosixPath(tag)
    with tempfile.TemporaryDirectory(prefix="genlab-png-") as folder:
        # both take a file; each copies it, so the temporary folder can go afterwards
        path = Path(folder) / f"{tag_path.name}_{step:03d}.png"
        path.write_bytes(png)
        for logger in trackers:
            if isinstance(logger, MLFlowLogger):
                folder_in_run = str(tag_path.parent) if tag_path.parent.name else None
                logger.experiment.log_artifact(logger.run_id, str(path), folder_in_run)
            else:
                # no step: W&B puts it at the last step the scalars were logged at
                logger.log_image(tag, [str(path)], caption=[f"epoch {step}"])


def log_tensorboard(
    trainer: L.Trainer, tag: str, png: bytes, shape: tuple[int, ...], step: int
) -> None:
    """The PNG as an image summary, to every TensorBoard logger of the trainer.
    (`add_image` would encode the picture again; it is encoded once for the files and here.)"""
    loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
    if not loggers:
        return
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
    for logger in loggers:
        writer = logger.experiment
        if writer.file_writer is not None:  # None once closed
            writer.file_writer.add_summary(summary, global_step=step)
