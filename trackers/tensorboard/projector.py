"""Embeddings for TensorBoard's projector, written as ``SummaryWriter.add_embedding`` writes them: per embedding a
``<step>/<tag>`` folder with the points, labels and sprite, and one ``projector_config.pbtxt`` listing them all."""

from __future__ import annotations

import os
from typing import Any


def encode_tag(tag: str) -> str:
    """A tag as a folder name (``/``, ``%`` and ``\\`` escaped), as SummaryWriter names it."""
    return tag.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


class Projector:
    """The embeddings of one log dir; ``add`` writes one and rewrites the config listing every one so far."""

    def __init__(self, log_dir: str) -> None:
        from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

        self.log_dir = log_dir
        self._config = ProjectorConfig()

    def add(
        self,
        mat: Any,
        metadata: Any = None,
        label_img: Any = None,
        step: int | None = None,
        tag: str = "default",
        metadata_header: Any = None,
    ) -> None:
        from google.protobuf import text_format
        from torch.utils.tensorboard._embedding import get_embedding_info, make_mat, make_sprite, make_tsv, write_pbtxt
        from torch.utils.tensorboard.summary import make_np

        mat = make_np(mat)
        step = 0 if step is None else step
        subdir = f"{str(step).zfill(5)}/{encode_tag(tag)}"
        save_path = os.path.join(self.log_dir, subdir)
        os.makedirs(save_path, exist_ok=True)
        if metadata is not None:
            if mat.shape[0] != len(metadata):
                raise ValueError(f"embedding '{tag}': {len(metadata)} labels for {mat.shape[0]} points")
            make_tsv(metadata, save_path, metadata_header=metadata_header)
        if label_img is not None:
            if mat.shape[0] != label_img.shape[0]:
                raise ValueError(f"embedding '{tag}': {label_img.shape[0]} images for {mat.shape[0]} points")
            make_sprite(label_img, save_path)
        if mat.ndim != 2:
            raise ValueError(f"embedding '{tag}': mat must be 2-D [points, features], got shape {mat.shape}")
        make_mat(mat, save_path)
        self._config.embeddings.extend([get_embedding_info(metadata, label_img, subdir, step, tag)])
        write_pbtxt(self.log_dir, text_format.MessageToString(self._config))
