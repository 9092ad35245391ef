"""TensorBoard projector files for a store: TensorBoard pointed at DIR (its logdir) shows the 3-D view.

Writes into DIR:

- ``tensors.tsv``: one vector per line, tab-separated (the format the projector plugin reads).
- ``metadata.tsv``: a header row, then per work its relative path and every label column.
- ``sprite.png``: all thumbnails in a square grid (at most 8192 px a side, as the projector
  requires), in the order of ``tensors.tsv``.
- ``projector_config.pbtxt``: the plugin's `ProjectorConfig` message in text format, with
  paths relative to DIR so the folder can be moved.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from artenc.errors import UsageError, require
from artenc.progress import Progress
from artenc.viz.grids import thumbnail

if TYPE_CHECKING:
    import pandas as pd

    from artenc.store import Store

SPRITE_MAX = 8192  # the projector refuses larger sprite images
TENSORS, METADATA, SPRITE, CONFIG = "tensors.tsv", "metadata.tsv", "sprite.png", "projector_config.pbtxt"


def sprite_cell(n: int, wanted: int = 64) -> int:
    """Side of one sprite cell: `wanted` px, less when n cells would not fit in SPRITE_MAX."""
    per_side = max(1, math.ceil(math.sqrt(n)))
    return max(1, min(wanted, SPRITE_MAX // per_side))


def write_sprite(paths: list[str], out: str | os.PathLike, cell: int, *, progress: bool = True) -> Path:
    """Thumbnails of `paths`, centred in square cells, row by row, in one PNG."""
    per_side = max(1, math.ceil(math.sqrt(len(paths))))
    rows = math.ceil(len(paths) / per_side)
    sheet = Image.new("RGB", (per_side * cell, rows * cell), (255, 255, 255))
    with Progress(len(paths), "sprite", enabled=progress) as bar:
        for i, path in enumerate(paths):
            thumb = Image.fromarray(thumbnail(path, cell))
            x, y = (i % per_side) * cell, (i // per_side) * cell
            sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
            bar.update()
    out = Path(out)
    sheet.save(out, optimize=True)
    return out


def _tsv_cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return " ".join(str(value).replace("\t", " ").splitlines())


def metadata_table(items: pd.DataFrame, label_columns: list[str]) -> str:
    """TSV text: header `relpath` + label columns, then one row per work."""
    columns = ["relpath", *label_columns]
    lines = ["\t".join(columns)]
    for row in items[columns].itertuples(index=False):
        lines.append("\t".join(_tsv_cell(v) for v in row))
    return "\n".join(lines) + "\n"


def projector_config(n: int, dim: int, name: str, sprite: int | None) -> str:
    """The ProjectorConfig text (built with TensorBoard's own proto, so it parses)."""
    pb = require("tensorboard.plugins.projector.projector_config_pb2", "viz")
    from google.protobuf import text_format

    config = pb.ProjectorConfig()
    emb = config.embeddings.add()
    emb.tensor_name = name
    emb.tensor_path = TENSORS
    emb.metadata_path = METADATA
    emb.tensor_shape.extend([n, dim])
    if sprite:
        emb.sprite.image_path = SPRITE
        emb.sprite.single_image_dim.extend([sprite, sprite])
    return text_format.MessageToString(config)


def write_projector(store: Store, out_dir: str | os.PathLike, *, sprite: bool = True, thumb: int = 64,
                    progress: bool = True) -> dict:
    """Write the projector files for every work of `store`; returns what was written."""
    if len(store) == 0:
        raise UsageError(f"{store.root}: the store is empty (embed some images first)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items, vectors = store.items, store.vectors
    name = f"artenc/{store.meta.get('model', 'vectors')}"
    cell = sprite_cell(len(items), thumb) if sprite else None
    config = projector_config(len(items), store.dim, name, cell)
    np.savetxt(out / TENSORS, vectors, fmt="%.6g", delimiter="\t")
    (out / METADATA).write_text(metadata_table(items, store.label_columns), encoding="utf-8")
    if cell:
        write_sprite(items["path"].tolist(), out / SPRITE, cell, progress=progress)
    (out / CONFIG).write_text(config, encoding="utf-8")  # last: its presence means the folder is complete
    return {
        "out": str(out), "count": len(items), "dim": store.dim, "tensor_name": name,
        "metadata_columns": ["relpath", *store.label_columns], "sprite_cell": cell,
        "files": [str(out / f) for f in (TENSORS, METADATA, *((SPRITE,) if sprite else ()), CONFIG)],
    }
