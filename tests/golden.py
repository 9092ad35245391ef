"""The fixed input of the golden-embedding test (run as a script to regenerate the vector)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "data" / "golden_lite0.npy"


def golden_image_path(folder: Path) -> Path:
    """Write the fixed lossless input image (PNG, deterministic pixels) and return its path."""
    from tests.conftest import painting

    path = folder / "golden.png"
    painting(20260101, (300, 260)).save(path, "PNG")
    return path


if __name__ == "__main__":
    import tempfile

    from artenc.embedding import encode_files
    from artenc.runtime import create_encoder

    with tempfile.TemporaryDirectory() as tmp:
        vec, err = encode_files(
            [golden_image_path(Path(tmp))], create_encoder(runtime="torch", device="cpu")
        )
    assert err == [None]
    GOLDEN.parent.mkdir(exist_ok=True)
    np.save(GOLDEN, vec[0].astype(np.float32), allow_pickle=False)
    print(GOLDEN, vec[0][:5])
