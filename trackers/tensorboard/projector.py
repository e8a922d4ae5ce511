"""Embeddings for TensorBoard's projector, written as ``SummaryWriter.add_embedding`` writes them: per embedding a
``<step>/<tag>`` folder with the points, labels and sprite, and one ``projector_config.pbtxt`` listing them all.

Unlike ``add_embedding``, everything is checked before anything is written,
and each folder is written in a hidden staging folder of the log dir and then
renamed into place, so a failure leaves no half-written folder behind. The
sprite takes label images of any height and width (each is centred in a
square cell on black) in ``uint8`` (0-255) or floats in [0, 1], and is scaled
down to fit TensorBoard's limit of :data:`MAX_SPRITE_PIXELS` a side.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

MAX_SPRITE_PIXELS = 8192
"""The widest and tallest sprite TensorBoard's projector shows (``MAX_SPRITE_IMAGE_SIZE_PX`` in its
``data-provider.ts``: a larger one is refused with "Sprite image ... exceeds maximum dimensions")."""


def encode_tag(tag: str) -> str:
    """A tag as a folder name (``/``, ``%`` and ``\\`` escaped), as SummaryWriter names it."""
    return tag.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def sprite_columns(count: int) -> int:
    """How many cells a row (and a column) of the square sprite of ``count`` images has: ``ceil(sqrt(count))``."""
    return max(1, math.isqrt(max(count, 1) - 1) + 1)


def sprite_cell(count: int, height: int, width: int) -> int:
    """The side of the square cell each of ``count`` label images of ``height x width`` gets in the sprite.

    The larger of height and width, made smaller when the sprite would pass
    :data:`MAX_SPRITE_PIXELS`; 0 when not even one pixel a cell fits.

    >>> sprite_cell(100, 28, 28), sprite_cell(100, 20, 32), sprite_cell(100, 1000, 1000)
    (28, 32, 819)
    """
    return min(max(height, width), MAX_SPRITE_PIXELS // sprite_columns(count))


def fitted_size(height: int, width: int, cell: int) -> tuple[int, int]:
    """``(height, width)`` scaled down (aspect kept) to fit a ``cell x cell`` square; as it is when it fits.

    >>> fitted_size(20, 32, 32), fitted_size(224, 112, 56)
    ((20, 32), (56, 28))
    """
    side = max(height, width)
    if side <= cell:
        return height, width
    return max(1, round(height * cell / side)), max(1, round(width * cell / side))


_INTEGERS = (torch.int8, torch.int16, torch.int32, torch.int64)


def label_pixels(label_img: Any) -> torch.Tensor:
    """Label images as ``[N, 3, H, W]`` uint8 RGB on the CPU.

    ``[N, H, W]`` and 1-channel images become greys; floats are taken to be
    in [0, 1] (clamped, NaN as 0) and scaled by 255; ``uint8`` stays as it
    is, other integers are taken to be 0-255 too.
    """
    images = torch.as_tensor(np.asarray(label_img)) if not isinstance(label_img, torch.Tensor) else label_img
    images = images.detach().cpu()
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"label_img has shape {tuple(images.shape)}; it must be [N, C, H, W] with 1 or 3 channels, or [N, H, W]"
        )
    if images.dtype in _INTEGERS:
        images = images.clamp(0, 255).to(torch.uint8)
    elif images.is_floating_point():
        images = (torch.nan_to_num(images.float(), nan=0.0).clamp(0, 1) * 255).round().to(torch.uint8)
    elif images.dtype != torch.uint8:
        raise ValueError(f"label_img is {images.dtype}; it must be floats in [0, 1] or uint8 (0-255)")
    return images.expand(-1, 3, -1, -1)


def make_sprite(label_img: Any) -> tuple[np.ndarray, int]:
    """The sprite (an ``HWC`` uint8 array) and its cell side: ``ceil(sqrt(N))`` square cells a row.

    Each image keeps its aspect ratio, centred in its cell on black, scaled
    down (antialiased) only when the sprite would pass :data:`MAX_SPRITE_PIXELS`.

    >>> sprite, cell = make_sprite(torch.ones(5, 1, 20, 32))
    >>> sprite.shape, cell
    ((96, 96, 3), 32)
    """
    images = label_pixels(label_img)
    count, _, height, width = images.shape
    if count == 0:
        raise ValueError("label_img holds no images")
    cell = sprite_cell(count, height, width)
    if cell < 1:
        raise ValueError(
            f"{count} label images do not fit TensorBoard's {MAX_SPRITE_PIXELS}x{MAX_SPRITE_PIXELS}-pixel sprite "
            "even at one pixel each; log fewer points, or no label images"
        )
    fit_height, fit_width = fitted_size(height, width, cell)
    if (fit_height, fit_width) != (height, width):
        scaled = torch.nn.functional.interpolate(
            images.float(), size=(fit_height, fit_width), mode="bilinear", antialias=True, align_corners=False
        )
        images = scaled.round().clamp(0, 255).to(torch.uint8)
    columns = sprite_columns(count)
    sprite = np.zeros((columns * cell, columns * cell, 3), dtype=np.uint8)
    pixels = images.permute(0, 2, 3, 1).numpy()
    top, left = (cell - fit_height) // 2, (cell - fit_width) // 2
    for index in range(count):
        row, column = divmod(index, columns)
        y, x = row * cell + top, column * cell + left
        sprite[y : y + fit_height, x : x + fit_width] = pixels[index]
    return sprite, cell


def _points(mat: Any) -> np.ndarray:
    if isinstance(mat, torch.Tensor):
        mat = mat.detach().cpu()
        if mat.dtype in (torch.float16, torch.bfloat16):
            mat = mat.float()
        return mat.numpy()
    return np.asarray(mat)


def _cell(value: Any) -> str:
    """A metadata value as one TSV cell (tabs and line breaks would split it)."""
    return str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


class Projector:
    """The embeddings of one log dir; ``add`` writes one and rewrites the config listing every one so far."""

    def __init__(self, log_dir: str) -> None:
        from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

        self.log_dir = log_dir
        self._config = ProjectorConfig()

    def add(
        self,
        mat: Any,
        metadata: Sequence[Any] | None = None,
        label_img: Any = None,
        step: int | None = None,
        tag: str = "default",
        metadata_header: Sequence[str] | None = None,
    ) -> None:
        """Write one embedding: ``mat`` ``[points, features]``, a label (or row of columns) and an image per point.

        Raises ValueError naming the embedding before anything is written when the parts don't fit together.
        """
        from tensorboard.plugins.projector.projector_config_pb2 import EmbeddingInfo

        points = _points(mat)
        if points.ndim != 2:
            raise ValueError(f"embedding '{tag}': mat must be 2-D [points, features], got shape {points.shape}")
        lines = self._metadata_lines(tag, points.shape[0], metadata, metadata_header)
        sprite: tuple[np.ndarray, int] | None = None
        if label_img is not None:
            count = label_img.shape[0] if hasattr(label_img, "shape") else len(label_img)
            if count != points.shape[0]:
                raise ValueError(f"embedding '{tag}': {count} images for {points.shape[0]} points")
            try:
                sprite = make_sprite(label_img)
            except ValueError as error:
                raise ValueError(f"embedding '{tag}': {error}") from None
        step = 0 if step is None else step
        subdir = f"{str(step).zfill(5)}/{encode_tag(tag)}"
        info = EmbeddingInfo(tensor_name=f"{tag}:{str(step).zfill(5)}", tensor_path=f"{subdir}/tensors.tsv")
        if lines is not None:
            info.metadata_path = f"{subdir}/metadata.tsv"
        if sprite is not None:
            info.sprite.image_path = f"{subdir}/sprite.png"
            info.sprite.single_image_dim.extend([sprite[1], sprite[1]])

        os.makedirs(self.log_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".projector-", dir=self.log_dir)
        try:
            self._write_files(staging, points, lines, None if sprite is None else sprite[0])
            replaced = self._install(staging, os.path.join(self.log_dir, subdir))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            self._list(info)
        except BaseException:
            final = os.path.join(self.log_dir, subdir)
            shutil.rmtree(final, ignore_errors=True)
            if replaced is not None:
                os.rename(replaced, final)  # the earlier embedding stays, as the config still lists it
                replaced = None
            raise
        finally:
            if replaced is not None:
                shutil.rmtree(replaced, ignore_errors=True)

    @staticmethod
    def _metadata_lines(
        tag: str, count: int, metadata: Sequence[Any] | None, metadata_header: Sequence[str] | None
    ) -> list[str] | None:
        if metadata is None:
            return None
        metadata = list(metadata)
        if len(metadata) != count:
            raise ValueError(f"embedding '{tag}': {len(metadata)} labels for {count} points")
        if not metadata_header:
            return [_cell(value) for value in metadata]
        columns = len(metadata_header)
        for index, row in enumerate(metadata):
            if isinstance(row, str) or not isinstance(row, Sequence) or len(row) != columns:
                raise ValueError(
                    f"embedding '{tag}': metadata_header has {columns} columns but label {index} is {row!r}; "
                    f"give each point a row of {columns} values"
                )
        return ["\t".join(_cell(v) for v in row) for row in [metadata_header, *metadata]]

    @staticmethod
    def _write_files(folder: str, points: np.ndarray, lines: list[str] | None, sprite: np.ndarray | None) -> None:
        with open(os.path.join(folder, "tensors.tsv"), "w", encoding="utf-8", newline="\n") as file:
            for row in points:
                file.write("\t".join(map(str, row.tolist())) + "\n")
        if lines is not None:
            with open(os.path.join(folder, "metadata.tsv"), "w", encoding="utf-8", newline="\n") as file:
                file.write("\n".join(lines) + "\n")
        if sprite is not None:
            from PIL import Image

            Image.fromarray(sprite).save(os.path.join(folder, "sprite.png"), format="PNG")

    def _install(self, staging: str, final: str) -> str | None:
        """Rename ``staging`` to ``final``; an earlier folder there is moved aside and its new path returned."""
        parent = os.path.dirname(final)
        created = not os.path.isdir(parent)
        os.makedirs(parent, exist_ok=True)
        replaced = None
        if os.path.exists(final):
            replaced = os.path.join(self.log_dir, f".projector-replaced-{uuid.uuid4().hex}")
            os.rename(final, replaced)
        try:
            os.rename(staging, final)
        except BaseException:
            if replaced is not None:
                os.rename(replaced, final)
            elif created:
                try:
                    os.rmdir(parent)
                except OSError:
                    pass
            raise
        return replaced

    def _list(self, info: Any) -> None:
        """Add (or replace, same tensor name) ``info`` in the config and rewrite ``projector_config.pbtxt``."""
        from google.protobuf import text_format
        from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

        config = ProjectorConfig()
        config.CopyFrom(self._config)
        kept = [e for e in config.embeddings if e.tensor_name != info.tensor_name]
        del config.embeddings[:]
        config.embeddings.extend([*kept, info])
        path = os.path.join(self.log_dir, "projector_config.pbtxt")
        partial = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            with open(partial, "w", encoding="utf-8") as file:
                file.write(text_format.MessageToString(config))
            os.replace(partial, path)
        except BaseException:
            if os.path.exists(partial):
                os.remove(partial)
            raise
        self._config = config
