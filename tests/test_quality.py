"""Image quality: scores measured while embedding, stored with the items, flagged by thresholds.

Planted cases (a nearly black image, an overexposed one, a Gaussian-blurred detailed one, a
20 x 400 strip, a greyscale scan, a sepia-toned one) must each get their flag, and ordinary
paintings none.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from artenc.collection import Collection
from artenc.embedding import embed_folders
from artenc.errors import ParameterError
from artenc.images import decode_crop
from artenc.preprocess import PreprocessConfig
from artenc.quality import (
    FLAGS,
    NOT_COMPUTED,
    SCORE_COLUMNS,
    QualityThresholds,
    content_box,
    image_stats,
    quality_flags,
    quality_report,
)
from artenc.store import BASE_COLUMNS, ModelSignature, Store
from tests.conftest import SHARED_DATA, painting


# ----- planted fixtures ---------------------------------------------------------------------
def detailed(seed: int, size: tuple[int, int] = (512, 384)) -> Image.Image:
    """A painting with fine grain (per-pixel luminance noise), the sharp source of `blurred`."""
    rng = np.random.default_rng(seed)
    base = np.asarray(painting(seed, size), dtype=np.float32)
    grain = rng.normal(0, 20, base.shape[:2])[..., None]
    return Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8))


def nearly_black(seed: int) -> Image.Image:
    return Image.fromarray((np.asarray(painting(seed), dtype=np.float32) * 0.04).astype(np.uint8))


def overexposed(seed: int) -> Image.Image:
    return ImageEnhance.Brightness(painting(seed)).enhance(3.0)


def blurred(seed: int) -> Image.Image:
    return detailed(seed).filter(ImageFilter.GaussianBlur(6))


def strip(seed: int) -> Image.Image:
    """20 x 400 px, cut from a painting."""
    return painting(seed, (400, 400)).crop((190, 0, 210, 400))


def greyscale_scan(seed: int) -> Image.Image:
    """A greyscale picture stored as RGB with a little independent noise per channel (a scanner's)."""
    rng = np.random.default_rng(seed)
    grey = np.asarray(painting(seed).convert("L"), dtype=np.float32)[..., None]
    return Image.fromarray(np.clip(grey + rng.normal(0, 1.5, (*grey.shape[:2], 3)), 0, 255).astype(np.uint8))


def sepia_toned(seed: int) -> Image.Image:
    """The classic sepia tone: grey level v -> (1.351 v, 1.203 v, 0.937 v), clipped."""
    grey = np.asarray(painting(seed).convert("L"), dtype=np.float32)[..., None]
    return Image.fromarray(np.clip(grey * np.array([1.351, 1.203, 0.937]), 0, 255).astype(np.uint8))


def letterboxed(seed: int, bar: int = 60, colour: int = 0) -> Image.Image:
    """A 320 x 256 painting with bars of `bar` px above and below (the canvas 320 x 376)."""
    canvas = Image.new("RGB", (320, 256 + 2 * bar), (colour,) * 3)
    canvas.paste(painting(seed), (0, bar))
    return canvas


PLANTED = {  # file stem -> (maker, the flag it must get)
    "black": (nearly_black, "dark"),
    "overexposed": (overexposed, "overexposed"),
    "blurred": (blurred, "blurry"),
    "strip": (strip, "odd_aspect_ratio"),
    "scan": (greyscale_scan, "grayscale"),
    "sepia": (sepia_toned, "sepia"),
    "letterbox": (lambda s: letterboxed(s, bar=90), "uniform_borders"),
}


def _items(images: dict[str, Image.Image]) -> pd.DataFrame:
    rows = []
    for name, img in images.items():
        rows.append({"path": name, "width": img.width, "height": img.height, **image_stats(img).to_dict()})
    return pd.DataFrame(rows)


# ----- scores -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("stem", sorted(PLANTED))
def test_planted_case_gets_its_flag(stem: str, seed: int) -> None:
    maker, flag = PLANTED[stem]
    flags = quality_flags(_items({stem: maker(seed)}))
    assert bool(flags.loc[0, flag]), flags.loc[0].to_dict()


def test_planted_size_and_information_flags() -> None:
    flags = quality_flags(_items({"strip": strip(0), "black": nearly_black(0), "tiny": painting(0, (96, 80))}))
    assert flags["odd_size"].tolist() == [True, False, True]  # short sides 20 and 80 px < 128
    assert flags.loc[0, "aspect_ratio"] == 20.0 and flags.loc[0, "megapixels"] == pytest.approx(0.008)
    assert bool(flags.loc[1, "low_information"])  # a few grey levels only


@pytest.mark.parametrize("size", [(320, 256), (640, 512), (200, 300), (1024, 700)])
def test_ordinary_paintings_are_not_flagged(size: tuple[int, int]) -> None:
    flags = quality_flags(_items({f"p{s}": painting(s, size) for s in range(12)}))
    assert not flags[list(FLAGS)].any(axis=None), flags[flags[list(FLAGS)].any(axis=1)].T
    assert flags["computed"].all() and (flags["note"] == "").all()


def test_score_ranges_and_known_values() -> None:
    grey = image_stats(Image.new("RGB", (300, 200), (128, 128, 128)))
    assert grey.entropy == 0 and grey.sharpness == 0 and grey.colourfulness == 0
    assert grey.border_share == 0  # uniform throughout: no picture between bars
    assert grey.brightness == pytest.approx(128 / 255)
    white = image_stats(Image.new("RGB", (50, 50), "white"))
    assert white.overexposure == 1 and white.darkness == 0 and white.brightness == 1
    # two grey levels in equal parts: exactly 1 bit (256 px: measured as it is, no resampling)
    half = np.zeros((256, 128, 3), np.uint8)
    half[:, 64:] = 200
    assert image_stats(Image.fromarray(half)).entropy == pytest.approx(1.0)
    # a pure red image: hue 0, no spread; colourfulness = 0.3 * |(255, 127.5)|
    red = image_stats(Image.new("RGB", (40, 40), (255, 0, 0)))
    assert red.hue_spread == pytest.approx(0, abs=1e-6) and min(red.hue, 360 - red.hue) < 1
    assert red.colourfulness == pytest.approx(0.3 * math.hypot(255, 127.5))
    for stats in (image_stats(painting(s)) for s in range(5)):
        d = stats.to_dict()
        assert list(d) == list(SCORE_COLUMNS)
        for name in ("brightness", "darkness", "overexposure", "tone_residual", "border_share"):
            assert 0 <= d[name] <= 1, name
        assert 0 <= d["entropy"] <= 8 and 0 <= d["hue"] < 360 and d["hue_spread"] >= 0


def test_sharpness_does_not_depend_on_image_size() -> None:
    """The same picture at 2048 and 512 px wide scores alike (both measured on a 256-px
    thumbnail); a blurred copy scores far lower at either size."""
    big = detailed(7, (2048, 1536))
    small = big.resize((512, 384), Image.Resampling.LANCZOS)
    s_big, s_small = image_stats(big).sharpness, image_stats(small).sharpness
    assert abs(s_big - s_small) / max(s_big, s_small) < 0.2, (s_big, s_small)
    for img in (big, small):
        soft = img.filter(ImageFilter.GaussianBlur(6 * img.width / 512))
        assert image_stats(soft).sharpness < 0.1 * min(s_big, s_small)


@pytest.mark.parametrize("colour", [0, 255, 90])
def test_border_share_of_bars_of_any_colour(colour: int) -> None:
    img = letterboxed(3, bar=60, colour=colour)
    stats = image_stats(img)
    assert stats.border_share == pytest.approx(120 / 376, abs=0.02)
    # scores describe the picture inside the bars: the same as the painting alone
    assert stats.brightness == pytest.approx(image_stats(painting(3)).brightness, abs=0.02)
    box = content_box(np.asarray(img.convert("L")))
    assert box is not None and box[0] == 0 and box[2] == 320 and abs(box[1] - 60) <= 1 and abs(box[3] - 316) <= 1
    assert content_box(np.full((30, 40), 17, np.uint8)) is None


@pytest.mark.parametrize("size", [(1, 1), (1, 100), (100, 1), (2, 3), (3000, 30), (257, 255)])
def test_any_geometry_gives_finite_scores(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    scores = image_stats(img).to_dict()
    assert all(math.isfinite(v) for v in scores.values()), scores


def test_image_stats_wants_rgb() -> None:
    with pytest.raises(ParameterError, match="^img "):
        image_stats(Image.new("L", (10, 10)))


# ----- flags: thresholds, missing scores ----------------------------------------------------
def test_thresholds_change_flags_and_are_checked() -> None:
    items = _items({"p": painting(0), "b": blurred(0)})
    assert quality_flags(items)["blurry"].tolist() == [False, True]
    assert quality_flags(items, QualityThresholds(blurry_sharpness=1e9))["blurry"].tolist() == [True, True]
    assert quality_flags(items, QualityThresholds(blurry_sharpness=0))["blurry"].tolist() == [False, False]
    for bad, param in [({"dark_share": 1.5}, "dark_share"), ({"odd_aspect_ratio": 0.5}, "odd_aspect_ratio"),
                       ({"low_information_entropy": 9}, "low_information_entropy"),
                       ({"sepia_hue_range": (70, 20)}, "sepia_hue_range"), ({"min_side": -1}, "min_side")]:
        with pytest.raises(ParameterError, match=f"^{param} "):
            QualityThresholds(**bad)
    with pytest.raises(ParameterError, match="^items "):
        quality_flags(pd.DataFrame({"path": ["a"]}))


def test_old_items_without_scores_say_not_computed() -> None:
    items = pd.DataFrame({"path": ["/a", "/b"], "width": [20, 800], "height": [400, 600]})
    flags = quality_flags(items)
    assert not flags["computed"].any() and (flags["note"] == NOT_COMPUTED).all()
    assert NOT_COMPUTED == "not computed (re-embed)"
    assert flags["dark"].isna().all() and flags["sepia"].isna().all() and flags["blurry"].isna().all()
    assert flags["odd_aspect_ratio"].tolist() == [True, False]  # size flags come from width/height
    assert flags[list(SCORE_COLUMNS)].isna().all(axis=None)
    report = quality_report(items)
    assert report.computed == 0 and report.note == f"2 works: {NOT_COMPUTED}"
    assert [i.path for i in report.flags["odd_aspect_ratio"]] == ["/a"] and report.flags["dark"] == []


def test_report_is_worst_first_and_json() -> None:
    night = np.zeros((200, 300, 3), np.uint8)  # a small lit window on black: a dark image
    night[90:110, 140:160] = np.random.default_rng(0).integers(100, 255, (20, 20, 3))
    images = {"p": painting(1), "b1": nearly_black(1), "b2": Image.fromarray(night),
              "blur": blurred(1), "soft": detailed(1).filter(ImageFilter.GaussianBlur(3))}
    report = quality_report(_items(images))
    assert [i.path for i in report.flags["dark"]] == ["b1", "b2"]
    assert report.flags["dark"][1].score == pytest.approx(1 - 400 / 60000, abs=0.01)
    blurry = [i.path for i in report.flags["blurry"]]
    assert blurry[0] == "b1" and blurry.index("blur") < blurry.index("soft")  # lowest sharpness first
    scores = [i.score for i in report.flags["blurry"]]
    assert scores == sorted(scores)
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["works"] == 5 and doc["computed"] == 5 and doc["not_computed"] == 0
    assert set(doc["flags"]) == set(FLAGS) and doc["counts"]["dark"] == 2
    assert doc["thresholds"] == QualityThresholds().to_dict() and doc["scores"]["blurry"] == "sharpness"
    assert doc["flags"]["dark"][0] == {"row": 1, "path": "b1", "score": 1.0}


# ----- through the decode path and the store --------------------------------------------------
def test_decode_crop_measures_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "b.png"
    blurred(2).save(path)
    cfg = PreprocessConfig()
    assert decode_crop(path, cfg).stats is None
    crop = decode_crop(path, cfg, quality=True)
    assert crop.stats == image_stats(blurred(2))
    np.testing.assert_array_equal(crop.pixels, decode_crop(path, cfg).pixels)  # the crop is unchanged


def _write_planted(folder: Path) -> dict[str, str]:
    """Planted cases (PNG, and the blurred one also as JPEG) and 4 ordinary paintings (JPEG);
    returns file name -> expected flag ("" for none)."""
    folder.mkdir(parents=True)
    expected = {}
    for stem, (maker, flag) in PLANTED.items():
        maker(5).save(folder / f"{stem}.png")
        expected[f"{stem}.png"] = flag
    blurred(6).save(folder / "blurred.jpg", quality=90)
    greyscale_scan(6).save(folder / "scan.jpg", quality=90)
    sepia_toned(6).save(folder / "sepia.jpg", quality=90)
    expected.update({"blurred.jpg": "blurry", "scan.jpg": "grayscale", "sepia.jpg": "sepia"})
    for s in range(4):
        painting(20 + s, (480, 360)).save(folder / f"work{s}.jpg", quality=90)
        expected[f"work{s}.jpg"] = ""
    return expected


def test_embed_stores_scores_and_collection_flags_planted(tmp_path: Path, lite0_encoder) -> None:
    expected = _write_planted(tmp_path / "imgs")
    store_dir = tmp_path / "s"
    embed_folders([tmp_path / "imgs"], store_dir, encoder=lite0_encoder, workers=0, progress=False)
    store = Store.open(store_dir)
    items = store.items
    for col in SCORE_COLUMNS:
        assert col in items.columns and items[col].dtype == np.float64 and items[col].notna().all(), col
    flags = quality_flags(items)
    for name, flag in expected.items():
        row = flags[flags["path"].str.endswith("/" + name)].iloc[0]
        if flag:
            assert bool(row[flag]), (name, row.to_dict())
        else:
            assert not row[list(FLAGS)].any(), (name, row[list(FLAGS)].to_dict())
    report = Collection(store).quality()
    assert report.computed == len(items) and report.note == ""
    assert report.flags["dark"][0].path.endswith("/black.png")
    assert {Path(i.path).name for i in report.flags["sepia"]} == {"sepia.png", "sepia.jpg"}
    assert report.table["path"].tolist() == items["path"].tolist()
    # re-embedding a copy reuses the stored vector and carries its scores
    (tmp_path / "imgs" / "black_copy.png").write_bytes((tmp_path / "imgs" / "black.png").read_bytes())
    run = embed_folders([tmp_path / "imgs"], store_dir, encoder=lite0_encoder, workers=0, progress=False)
    assert run.reused == 1
    items = Store.open(store_dir).items.set_index("path")
    a, b = str(tmp_path / "imgs" / "black.png"), str(tmp_path / "imgs" / "black_copy.png")
    assert items.loc[b, list(SCORE_COLUMNS)].tolist() == items.loc[a, list(SCORE_COLUMNS)].tolist()


def test_store_without_score_columns_reads_and_mixes(tmp_path: Path) -> None:
    """A store written before quality scores existed opens, its items lack the columns and the
    report says "not computed (re-embed)"; a newer segment's rows carry scores beside them."""
    sig = ModelSignature(model="m", fingerprint="f", preprocess={"size": 4}, dim=3)
    store = Store.create(tmp_path / "s", sig)
    old = pd.DataFrame([{"path": "/old", "relpath": "old", "sha256": "h1", "size": 1, "mtime_ns": 1,
                         "width": 800, "height": 600, "error": None, "row": 0}], columns=BASE_COLUMNS)
    store.append_segment(old, np.eye(3, dtype=np.float32)[:1])
    assert not set(SCORE_COLUMNS) & set(pd.read_parquet(store.segment_dir / "seg-000001.parquet").columns)
    items = Store.open(tmp_path / "s").items
    assert not set(SCORE_COLUMNS) & set(items.columns)
    assert Collection(store).quality().note == f"1 works: {NOT_COMPUTED}"

    new = old.assign(path="/new", relpath="new", sha256="h2", **image_stats(nearly_black(0)).to_dict())
    store.append_segment(new, np.eye(3, dtype=np.float32)[1:2])
    store.compact()
    items = Store.open(tmp_path / "s").items
    flags = quality_flags(items)
    assert flags["computed"].tolist() == [True, False] and flags["note"].tolist() == ["", NOT_COMPUTED]
    assert flags["dark"].tolist()[0] is True and flags["dark"].isna().tolist() == [False, True]
    report = quality_report(items)
    assert [i.path for i in report.flags["dark"]] == ["/new"] and report.note == f"1 works: {NOT_COMPUTED}"


def test_label_column_named_like_a_score_is_renamed(tmp_path: Path) -> None:
    sig = ModelSignature(model="m", fingerprint="f", preprocess={"size": 4}, dim=3)
    store = Store.create(tmp_path / "s", sig)
    row = pd.DataFrame([{"path": "/a", "relpath": "a", "sha256": "h", "size": 1, "mtime_ns": 1, "width": 9,
                         "height": 9, "error": None, "row": 0, **image_stats(painting(0)).to_dict()}])
    store.append_segment(row, np.eye(3, dtype=np.float32)[:1])
    store.set_labels(pd.DataFrame({"path": ["/a"], "brightness": ["bright"]}))
    items = store.items
    assert items["label_brightness"].tolist() == ["bright"] and items["brightness"].dtype == np.float64


# ----- real paintings (slow) ----------------------------------------------------------------
@pytest.mark.slow
def test_wikiart_paintings_are_rarely_flagged() -> None:
    """200 WikiArt dev paintings: almost none dark, overexposed, blurry, low-information or of
    odd geometry. (Grayscale, sepia and uniform borders describe real prints, toned drawings
    and this data set's letterbox bars: counted, not limited.)"""
    root = SHARED_DATA / "wikiart_style"
    if not (root / "labels.csv").is_file():
        pytest.skip("needs ../shared/data/wikiart_style")
    labels = pd.read_csv(root / "labels.csv")
    dev = labels[labels["split"] == "dev"].sample(200, random_state=0)
    cfg = PreprocessConfig()
    rows = []
    for rel in dev["path"]:
        crop = decode_crop(root / rel, cfg, quality=True)
        rows.append({"path": rel, "width": crop.width, "height": crop.height, **crop.stats.to_dict()})
    flags = quality_flags(pd.DataFrame(rows))
    defects = ["dark", "overexposed", "blurry", "low_information", "odd_aspect_ratio", "odd_size"]
    assert flags[defects].any(axis=1).mean() <= 0.03, flags[defects].sum().to_dict()
    assert flags["sepia"].mean() <= 0.05 and flags["grayscale"].mean() <= 0.12
