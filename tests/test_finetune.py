"""Fine-tuning the last backbone stages (`backbone.trainable=N`) and the transfer-learning
classifier (`loss=ce`), end to end on a tiny generated image set: real Lightning steps,
cached activations and full mode, export, ONNX parity, embed, predict, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from artenc.cli import main as cli_main
from tests.conftest import write_colour_classes

TEXTURE = ["backbone=lite0_texture", "head.input_batch_norm=true", "head.dims=[16,8]"]


@pytest.fixture(scope="module")
def tiny_art(tmp_path_factory) -> Path:
    """3 colour classes x 6 images (48 px), labels `style`, `split` (one holdout each)."""
    return write_colour_classes(tmp_path_factory.mktemp("tiny_finetune"))


def config(root: Path, run: Path, cache: Path, *extra: str):
    from artenc.training import compose_config

    return compose_config([
        "data=images", f"data.root={root}", "data.label_fields=[style]", "data.include={split:[dev]}",
        "data.feature_runtime=torch", "data.cache_views=1", "data.batch_size=8", "data.num_workers=0",
        f"paths.cache_dir={cache}", "callbacks.embedding_map.method=pca", f"paths.output_dir={run}",
        "logger=csv", "trainer.max_epochs=1", "head.dims=[16,8]", *extra,
    ])


def _images(root: Path, preprocess) -> np.ndarray:
    from artenc.images import load_image
    from artenc.preprocess import to_uint8_chw

    return np.stack([to_uint8_chw(load_image(p), preprocess) for p in sorted((root / "images").glob("*.jpg"))])


@pytest.mark.parametrize("wrapper", ["plain", "texture"])
def test_stages_reproduce_the_backbone_features_exactly(wrapper):
    from artenc.backbones import create_backbone, layer_stats_backbone
    from artenc.layers.stages import StagedFeatures, model_stages

    if wrapper == "plain":
        net = create_backbone("lite0").model
    else:
        net = layer_stats_backbone(layers=["blocks.2", "blocks.6", "bn2"], covariance_layers=["blocks.5"]).model
    x = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = net.forward_head(net.forward_features(x), pre_logits=True)
        assert len(model_stages(getattr(net, "model", net))) == 9  # stem, 7 block stages, head conv
        for n in (1, 2, 3, 9):
            staged = StagedFeatures(net, n)
            fmap, extra = staged.frozen(x)
            assert fmap.shape[1] == {1: 320, 2: 192, 3: 112, 9: 3}[n]
            torch.testing.assert_close(staged.finish(*staged.unpack(staged.pack(fmap, extra))), reference,
                                       rtol=0, atol=0)
    with pytest.raises(ValueError, match="trainable must be 1..9"):
        StagedFeatures(net, 10)


@pytest.mark.parametrize("wrapper", ["plain", "texture"])
def test_channels_last_gives_the_features_of_nchw(wrapper):
    """PartlyTrainableBackbone runs in NHWC (channels_last, faster on CPU: scripts/bench_train.py):
    from uint8 images and from packed activations it gives the NCHW module's features up to float
    rounding, its maps and weights are NHWC, and gradients reach the trainable stages."""
    import copy

    from artenc.backbones import create_backbone, layer_stats_backbone
    from artenc.layers.stages import PartlyTrainableBackbone
    from artenc.runtime import EmbeddingModule

    backbone = (create_backbone("lite0") if wrapper == "plain" else
                layer_stats_backbone(layers=["blocks.2", "blocks.6", "bn2"], covariance_layers=["blocks.5"]))
    images = torch.randint(0, 256, (3, 3, 96, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    for trainable in (2, 9):
        nchw, nhwc = (PartlyTrainableBackbone(EmbeddingModule(copy.deepcopy(backbone.model), backbone.preprocess),
                                              trainable, channels_last=last) for last in (False, True))
        stem = nhwc.embedding.model.get_submodule("model.conv_stem" if wrapper == "texture" else "conv_stem").weight
        assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
        with torch.no_grad():
            normed = images.float() * nchw.embedding.scale + nchw.embedding.shift
            packed = nchw.staged.pack(*nchw.staged.frozen(normed))
        for x in (images, packed):
            nchw.train(False), nhwc.train(False)
            with torch.no_grad():
                torch.testing.assert_close(nhwc(x), nchw(x), rtol=0, atol=1e-5)
        nhwc.train(True)
        nhwc(images).sum().backward()
        assert all(p.grad is not None for p in nhwc.trainable_parameters())


def test_unknown_architecture_and_bad_settings_are_refused(tiny_art, tmp_path):
    from artenc.errors import ParameterError
    from artenc.layers.stages import model_stages
    from artenc.training import build

    with pytest.raises(ValueError, match="stages are not known"):
        model_stages(torch.nn.Linear(2, 2))
    with pytest.raises(ParameterError, match="backbone.trainable"):
        build(config(tiny_art, tmp_path / "r", tmp_path / "c", "backbone.trainable=12"))
    with pytest.raises(ParameterError, match="backbone.bn"):
        build(config(tiny_art, tmp_path / "r", tmp_path / "c", "backbone.trainable=1", "backbone.bn=maybe"))


def test_too_many_trainable_stages_message_names_the_setting_once(tiny_art, tmp_path):
    from artenc.errors import ParameterError
    from artenc.training import build

    with pytest.raises(ParameterError, match=r"^backbone.trainable must be 1\.\.\d+ ") as exc:
        build(config(tiny_art, tmp_path / "r", tmp_path / "c", "backbone.trainable=12"))
    assert "trainable trainable" not in str(exc.value) and exc.value.problem.startswith("must be")


@pytest.mark.parametrize(("mode", "trainable", "extra"), [
    ("cache", 1, []),
    ("cache", 2, TEXTURE),
    ("full", 2, ["backbone.bn=train", "backbone.lr=0.01"]),
    ("cache", 1, [*TEXTURE, "backbone.head_epochs=1", "trainer.max_epochs=2", "callbacks.model_checkpoint.monitor=null"]),
])
def test_last_stages_train_and_export_with_onnx_parity(tiny_art, tmp_path, mode, trainable, extra):
    """The trainable stages change (the frozen ones do not), the exported encoder holds them, and
    ONNX Runtime, torch and the training module agree on its embeddings."""
    from artenc.backbones import create_backbone
    from artenc.runtime import create_encoder
    from artenc.training import build, train

    run, cache = tmp_path / "run", tmp_path / "cache"
    cfg = config(tiny_art, run, cache, f"data.mode={mode}", f"backbone.trainable={trainable}", *extra)
    result = train(config=cfg)
    pretrained = create_backbone("lite0").model.state_dict()
    exported = torch.load(result.encoder, map_location="cpu", weights_only=True)
    assert json.loads(exported["config"])["extra"]["trainable_stages"] == trainable
    prefix = "backbone.model." if "texture" in str(extra) else "backbone."
    changed = {k.removeprefix(prefix) for k, v in exported["state_dict"].items()
               if k.startswith(prefix) and k.removeprefix(prefix) in pretrained
               and not torch.equal(v, pretrained[k.removeprefix(prefix)])}
    trained_stages = {1: ("conv_head", "bn2"), 2: ("blocks.6", "conv_head", "bn2")}[trainable]
    assert changed and all(k.startswith(trained_stages) for k in changed)
    if "backbone.bn=train" in extra:  # BatchNorm statistics of the trained stages moved too
        assert any(k.endswith("running_mean") for k in changed)
    else:  # frozen BatchNorm statistics: only weights and biases trained
        assert not any(k.endswith(("running_mean", "running_var")) for k in changed)
    if mode == "cache":
        assert list(cache.glob("*/clean.npy"))

    _, _, module = build(cfg)
    module.load_state_dict(torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)["state_dict"])
    module.eval()
    onnx = create_encoder(str(result.encoder), runtime="onnx", device="cpu")
    images = _images(tiny_art, onnx.preprocess)
    with torch.no_grad():
        trained = module(torch.from_numpy(images)[:, None])[:, 0].numpy()
    torch_encoded = create_encoder(str(result.encoder), runtime="torch", device="cpu").encode(images)
    np.testing.assert_allclose(torch_encoded, trained, atol=1e-5)
    np.testing.assert_allclose(onnx.encode(images), torch_encoded, atol=1e-5)

    store = tmp_path / "store"
    assert cli_main(["embed", str(tiny_art), "--labels", str(tiny_art / "labels.csv"), "--model",
                     str(result.encoder), "--out", str(store), "--runtime", "onnx"]) == 0
    vectors = np.load(next(store.rglob("*.npy")))
    assert vectors.shape[1] == 8


@pytest.mark.parametrize("mode", ["cache", "full"])
def test_head_epochs_train_the_head_alone_first(tiny_art, tmp_path, mode):
    """backbone.head_epochs=1: the first epoch leaves the stages at their pretrained weights (in
    cache mode it trains on features computed once from the cached activations, the same
    function the stages compute), then the stages train; with a frozen backbone it is refused."""
    from artenc.backbones import create_backbone
    from artenc.errors import ParameterError
    from artenc.training import build, train

    pretrained = create_backbone("lite0").model.state_dict()

    def changed_stage_weights(result) -> set[str]:
        exported = torch.load(result.encoder, map_location="cpu", weights_only=True)["state_dict"]
        named = {k.removeprefix("backbone.model."): v for k, v in exported.items() if k.startswith("backbone.model.")}
        return {k for k, v in named.items() if k in pretrained and not torch.equal(v, pretrained[k])}

    common = [*TEXTURE, f"data.mode={mode}", "backbone.trainable=1", "backbone.head_epochs=1",
              "callbacks.model_checkpoint.monitor=null"]  # the last epoch is exported, not the best
    one = train(config=config(tiny_art, tmp_path / "one", tmp_path / "cache", *common, "trainer.max_epochs=1"))
    assert changed_stage_weights(one) == set()
    two = train(config=config(tiny_art, tmp_path / "two", tmp_path / "cache", *common, "trainer.max_epochs=2"))
    assert changed_stage_weights(two) and all(k.startswith(("conv_head", "bn2")) for k in changed_stage_weights(two))

    if mode == "cache":
        _, datamodule, module = build(config(tiny_art, tmp_path / "three", tmp_path / "cache", *common))
        datamodule.setup("fit")
        assert datamodule.in_head_phase()
        activations = datamodule.train_set.features  # (N, V, M) float16
        served = datamodule.head_train_set.features  # (N, V, D) float16
        assert served.shape[:2] == activations.shape[:2] and served.shape[2] == module.backbone.staged.dim
        module.eval()
        with torch.no_grad():
            expected = module.backbone(torch.from_numpy(activations[:, 0].astype(np.float32))).numpy()
        np.testing.assert_allclose(served[:, 0].astype(np.float32), expected, atol=2e-3)  # float16 storage
    with pytest.raises(ParameterError, match="backbone.head_epochs"):
        build(config(tiny_art, tmp_path / "r", tmp_path / "c", "backbone.head_epochs=2"))


def test_cross_entropy_classifier_is_exported_and_used(tiny_art, tmp_path, capsys):
    """loss=ce: the classifier trains (accuracy logged), is exported with its class names, and
    predict / evaluate use its probabilities."""
    from artenc.backbones import read_classifier
    from artenc.collection import Collection
    from artenc.training import train

    run = tmp_path / "run"
    result = train(config=config(tiny_art, run, tmp_path / "cache", "loss=ce", "loss.label_smoothing=0.1",
                                 "backbone.trainable=1", "trainer.max_epochs=3"))
    assert 0 <= result.metrics["val/classifier_accuracy"] <= 1
    classifier = read_classifier(result.encoder)
    assert classifier is not None and classifier.field == "style" and classifier.classes == ["s0", "s1", "s2"]
    assert classifier.weight.shape == (3, 8)

    store = tmp_path / "store"
    assert cli_main(["embed", str(tiny_art), "--labels", str(tiny_art / "labels.csv"), "--model",
                     str(result.encoder), "--out", str(store)]) == 0
    capsys.readouterr()
    image = str(tiny_art / "images" / "c2_5.jpg")
    assert cli_main(["predict", str(store), image, "--field", "style", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    style = doc["predictions"][0]["fields"]["style"]
    assert style["method"] == "classifier"
    assert set(style["probabilities"]) == {"s0", "s1", "s2"}
    assert abs(sum(style["probabilities"].values()) - 1) < 1e-3  # 4 decimals each
    assert style["label"] == max(style["probabilities"], key=style["probabilities"].get)
    assert style["confidence"] == pytest.approx(max(style["probabilities"].values()), abs=1e-4)

    report = Collection.open(store).evaluate(["style"], k=3)
    field = report.to_dict()["fields"]["style"]
    vectors, labels = Collection.open(store).store.vectors, Collection.open(store).store.items["style"]
    predicted = np.asarray(classifier.classes)[classifier.probabilities(vectors).argmax(1)]
    assert field["classifier_accuracy"] == pytest.approx(float((predicted == labels.to_numpy()).mean()))
    assert cli_main(["evaluate", str(store), "--field", "style", "-k", "3", "--no-linear-probe"]) == 0
    assert "| classifier |" in capsys.readouterr().out

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from artenc.serve.app import create_app
    from artenc.serve.state import ServeSettings

    settings = ServeSettings(thumbnail_dir=str(tmp_path / "thumbs"), allowed_hosts=("testserver",))
    with TestClient(create_app(str(store), settings)) as client:
        upload = client.post("/api/search", params={"k": 3},
                             files={"file": ("q.jpg", (tiny_art / "images" / "c2_5.jpg").read_bytes(), "image/jpeg")})
        similar = client.get("/api/items/0/similar", params={"k": 3})
    for response in (upload, similar):
        assert response.status_code == 200, response.text
        served = response.json()["predicted"]["style"]
        assert served["method"] == "classifier" and set(served["probabilities"]) == {"s0", "s1", "s2"}
    assert upload.json()["predicted"]["style"]["probabilities"] == style["probabilities"]


def test_activation_cache_key_covers_the_cut_and_the_frozen_weights_only():
    from artenc.backbones import create_backbone
    from artenc.data.feature_cache import ActivationEncoder

    backbone = create_backbone("lite0")
    one, two = ActivationEncoder(backbone, 1, runtime="torch"), ActivationEncoder(backbone, 2, runtime="torch")
    assert one.signature.fingerprint != two.signature.fingerprint
    assert one.signature.dim == 320 * 7 * 7 and two.signature.dim == 192 * 7 * 7
    with torch.no_grad():
        backbone.model.conv_head.weight.add_(1.0)  # a trained stage changes: the cache stays valid
    assert ActivationEncoder(backbone, 1, runtime="torch").signature.fingerprint == one.signature.fingerprint
    with torch.no_grad():
        backbone.model.blocks[0][0].conv_dw.weight.add_(1.0)  # a frozen weight changes: a new cache
    assert ActivationEncoder(backbone, 1, runtime="torch").signature.fingerprint != one.signature.fingerprint


def test_cross_entropy_loss_smooths_and_ignores_missing_labels():
    from artenc.losses import CrossEntropyLoss

    logits = torch.tensor([[[4.0, 0.0, 0.0], [3.0, 1.0, 0.0]], [[0.0, 2.0, 0.0], [0.0, 0.0, 9.0]]])
    labels = torch.tensor([[0], [-1]])
    expected = torch.nn.functional.cross_entropy(logits[0], torch.tensor([0, 0]))
    torch.testing.assert_close(CrossEntropyLoss()(logits, labels), expected)
    smoothed = CrossEntropyLoss(label_smoothing=0.2)(logits, labels)
    assert smoothed > expected
    assert CrossEntropyLoss()(logits, torch.tensor([[-1], [-1]])) == 0
    for bad in ({"label_smoothing": 1.0}, {"scale": 0.0}):
        with pytest.raises(ValueError):
            CrossEntropyLoss(**bad)


def test_a_group_with_a_start_step_gets_its_own_schedule_after_it():
    """The stages that join after the head-only epochs: rate 0 before `start_step`, then a
    warm-up and a full cosine decay of their own; the head's group keeps the plain schedule."""
    from artenc.models.schedules import warmup_cosine

    head, stages = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [head]}, {"params": [stages], "lr": 0.1, "start_step": 60}], lr=1.0)
    schedule = warmup_cosine(optimizer, total_steps=100, warmup_fraction=0.1)
    rates = []
    for _ in range(100):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    head_rates, stage_rates = np.array(rates).T
    np.testing.assert_allclose(head_rates, [schedule.factor(s) for s in range(100)])
    assert head_rates.max() == pytest.approx(1.0)
    assert (stage_rates[:60] == 0).all()
    assert stage_rates[60] == pytest.approx(0.1 / 4)  # 4 warm-up steps: a tenth of the 40 left
    assert stage_rates[63] == pytest.approx(0.1) and stage_rates.max() == pytest.approx(0.1)
    assert stage_rates[-1] < 1e-3 and (np.diff(stage_rates[63:]) <= 1e-12).all()
