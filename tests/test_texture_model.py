"""`lite0-texture`, the label audit's model: a registered embed name, end to end on generated images.

Embedding with it (ONNX Runtime, as `artenc embed` does on a CPU), auditing the store, rebuilding
the encoder from the store for queries, and refusing to mix vectors of another layer choice.
Embedding and auditing go through the CLI (`artenc embed --model lite0-texture`, `artenc audit`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import artenc
from artenc.backbones import create_backbone, layer_stats_backbone
from artenc.backbones.features import TEXTURE_COVARIANCE_LAYERS, TEXTURE_LAYERS
from artenc.cli import main
from artenc.embedding import embed_folders
from artenc.errors import StoreError
from artenc.images import decode_crop
from artenc.runtime import create_encoder, encoder_for_store, encoder_from_backbone
from artenc.store import Store
from tests.conftest import write_gallery

CONFIGS = Path(artenc.__file__).parent / "configs"


@pytest.fixture(scope="module")
def texture_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, list[Path]]:
    root = tmp_path_factory.mktemp("texture")
    images = write_gallery(root / "gallery", 12)
    labels = root / "labels.csv"
    pd.DataFrame({"path": [str(p) for p in images], "style": ["a", "b", "c"] * 4}).to_csv(labels, index=False)
    assert main(["embed", str(root / "gallery"), "--out", str(root / "store"), "--model", "lite0-texture",
                 "--labels", str(labels), "--workers", "0"]) == 0
    return Store.open(root / "store"), images


def test_the_name_is_listed_and_matches_the_training_config() -> None:
    assert {"lite0-texture", "lite0_texture"} <= set(artenc.list_models())
    config = yaml.safe_load((CONFIGS / "backbone" / "lite0_texture.yaml").read_text())
    assert tuple(config["layers"]) == TEXTURE_LAYERS  # one set of layers for embedding and training
    assert tuple(config["covariance_layers"]) == TEXTURE_COVARIANCE_LAYERS


def test_embed_audit_and_query_with_the_texture_model(texture_store, capsys) -> None:
    store, images = texture_store
    assert store.meta["model"] == "lite0-texture" and store.meta["dim"] == 32492 == store.vectors.shape[1]
    vectors = np.asarray(store.vectors)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    report = artenc.Collection(store).audit(k=3)
    assert main(["audit", str(store.root), "-k", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["label_issues"]["style"]["checked"] == 12 and doc["count"] == 12
    scores = report.fields["style"].scores
    assert scores.checked.all() and len(scores.ranking) == 12 and 0.0 <= scores.probe_weight <= 1.0
    assert np.all((scores.quality >= 0) & (scores.quality <= 1))
    # queries: the store's name rebuilds the same encoder (ONNX and torch agree)
    encoder = encoder_for_store(store.meta, device="cpu", runtime="onnx")
    torch_encoder = encoder_for_store(store.meta, device="cpu", runtime="torch")
    assert encoder.runtime == "onnx" and torch_encoder.runtime == "torch"
    row = store.items["path"].astype(str).tolist().index(str(images[0]))
    batch = decode_crop(images[0], encoder.preprocess).pixels[None]
    np.testing.assert_allclose(encoder.encode(batch)[0], vectors[row], atol=1e-4)
    np.testing.assert_allclose(torch_encoder.encode(batch)[0], vectors[row], atol=1e-4)


def test_vectors_of_another_layer_choice_never_mix(texture_store, tmp_path: Path) -> None:
    store, _ = texture_store
    other = layer_stats_backbone("tf_efficientnet_lite0", layers=["blocks.5", "bn2"])
    assert create_backbone("lite0-texture").dim != other.dim
    encoder = encoder_from_backbone(other, device="cpu", runtime="torch")
    assert encoder.signature.fingerprint != store.meta["fingerprint"]
    more = write_gallery(tmp_path / "more", 2, start=50)
    with pytest.raises(StoreError, match="refusing to add"):
        embed_folders(more, store.root, encoder=encoder, workers=0, progress=False)
    # the same pretrained weights read at other layers with the same dim still differ by fingerprint
    same_dim = layer_stats_backbone("tf_efficientnet_lite0", layers=TEXTURE_LAYERS[::-1],
                                    covariance_layers=TEXTURE_COVARIANCE_LAYERS)
    assert same_dim.dim == store.meta["dim"]
    assert create_encoder("lite0-texture", device="cpu", runtime="torch").signature.fingerprint == store.meta[
        "fingerprint"] != encoder_from_backbone(same_dim, device="cpu", runtime="torch").signature.fingerprint
