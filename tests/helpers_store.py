"""Writers of a toy store in other processes (kept light: no torch import in the children)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from artenc.store import BASE_COLUMNS, ModelSignature, Store

SIGNATURE = ModelSignature("toy", "f" * 16, {"size": 8}, 4)


def toy_rows(tag: str, k: int) -> pd.DataFrame:
    """k embedded rows of paths /x/<tag>/NNN.jpg (row 0..k-1)."""
    paths = [f"/x/{tag}/{j:03d}.jpg" for j in range(k)]
    return pd.DataFrame({"path": paths, "relpath": [p[3:] for p in paths], "sha256": paths, "size": 1,
                         "mtime_ns": 1, "width": 8, "height": 8, "error": None, "row": np.arange(k)})[BASE_COLUMNS]


def toy_writer(root: str, tag: str, segments: int, barrier) -> None:
    """Create (or open) the store at the same moment as the other writers (`barrier`), append
    `segments` segments of 3 rows whose vectors are all ord(tag), then try to compact."""
    barrier.wait()
    store = Store.create(root, SIGNATURE)
    with store.writing():
        for s in range(segments):
            store.append_segment(toy_rows(f"{tag}-{s}", 3), np.full((3, 4), ord(tag[0]), np.float32))
        store.compact()  # a no-op while other writers are active
