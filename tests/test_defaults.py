"""Each default lives in `artenc.defaults`; the library, the CLI, the web page and the report use it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from artenc import defaults as D
from artenc.cli import build_parser
from artenc.cluster import cluster_store, cluster_vectors
from artenc.collection import Collection
from artenc.dedup import find_duplicates
from artenc.embedding import embed_folders
from artenc.images import load_image, open_image
from artenc.neighbors import similar
from artenc.report.report import ReportOptions
from artenc.viz.umap_map import project_2d


def default_of(fn, name: str):
    return inspect.signature(fn).parameters[name].default


def cli_defaults(*argv: str) -> dict:
    return vars(build_parser().parse_args(list(argv)))


def test_library_functions_take_the_shared_defaults() -> None:
    assert default_of(find_duplicates, "verify") is D.VERIFY_DUPLICATES is True
    assert default_of(find_duplicates, "min_inliers") == D.MIN_INLIERS == 15
    assert default_of(similar, "min_inliers") == D.MIN_INLIERS
    assert default_of(similar, "k") == D.SIMILAR_K and default_of(similar, "verify_top") == D.VERIFY_TOP
    for fn in (embed_folders, open_image, load_image):
        assert default_of(fn, "max_pixels") == D.MAX_PIXELS == 178_956_970
    for fn in (cluster_vectors, cluster_store):
        assert default_of(fn, "k_range") == D.CLUSTER_K_RANGE
        assert default_of(fn, "sample_size") == D.CLUSTER_SAMPLE
    assert ReportOptions().samples == D.REPORT_SAMPLES and ReportOptions().k == D.REPORT_K
    assert ReportOptions().verify is D.VERIFY_DUPLICATES
    # the Python face (the CLI, the web page and the report call it)
    assert default_of(Collection.duplicates, "verify") is D.VERIFY_DUPLICATES
    assert default_of(Collection.duplicates, "min_inliers") == D.MIN_INLIERS
    assert default_of(Collection.similar, "k") == D.SIMILAR_K
    assert default_of(Collection.evaluate, "k") == default_of(Collection.predict, "k") == D.EVALUATION_K
    assert default_of(Collection.clusters, "k_range") == D.CLUSTER_K_RANGE
    assert default_of(Collection.clusters, "sample_size") == D.CLUSTER_SAMPLE
    assert (default_of(project_2d, "n_neighbors"), default_of(project_2d, "min_dist")) == (
        D.UMAP_NEIGHBORS, D.UMAP_MIN_DIST)


def test_duplicate_threshold_follows_the_mode() -> None:
    assert D.duplicate_threshold(True) == D.DUPLICATE_THRESHOLD == 0.75
    assert D.duplicate_threshold(False) == D.DUPLICATE_THRESHOLD_UNVERIFIED == 0.9


def test_cli_flags_default_to_the_shared_values() -> None:
    dedup = cli_defaults("dedup", "S")
    assert dedup["min_inliers"] == D.MIN_INLIERS and dedup["verify"] is D.VERIFY_DUPLICATES
    assert dedup["threshold"] is None and dedup["top_m"] is None  # resolved by find_duplicates
    sim = cli_defaults("similar", "S", "q.jpg")
    assert (sim["k"], sim["verify_top"], sim["min_inliers"]) == (D.SIMILAR_K, D.VERIFY_TOP, D.MIN_INLIERS)
    assert cli_defaults("embed", "imgs", "--out", "S")["max_pixels"] == D.MAX_PIXELS
    cluster = cli_defaults("cluster", "S")
    assert (cluster["k_range"], cluster["sample_size"]) == (D.CLUSTER_K_RANGE, D.CLUSTER_SAMPLE)
    report = cli_defaults("report", "S", "--out", "r.html")
    assert (report["samples"], report["k"], report["verify"]) == (D.REPORT_SAMPLES, D.REPORT_K, True)
    assert cli_defaults("evaluate", "S")["k"] == cli_defaults("predict", "S", "x.jpg")["k"] == D.EVALUATION_K
    umap = cli_defaults("umap", "S", "--out", "m.png")
    assert (umap["neighbors"], umap["min_dist"]) == (D.UMAP_NEIGHBORS, D.UMAP_MIN_DIST)


def test_web_page_settings_match_artenc_dedup_and_embed() -> None:
    pytest.importorskip("fastapi")
    from artenc.serve.state import MB, ServeSettings

    settings = ServeSettings()
    assert settings.verify_duplicates is True and settings.duplicate_threshold == 0.75
    assert settings.min_inliers == D.MIN_INLIERS
    assert settings.max_pixels == default_of(embed_folders, "max_pixels")
    assert ServeSettings(verify_duplicates=False).duplicate_threshold == D.DUPLICATE_THRESHOLD_UNVERIFIED
    assert ServeSettings(duplicate_threshold=0.8).duplicate_threshold == 0.8
    # `artenc serve` with no flags builds exactly these settings
    serve = cli_defaults("serve", "S")
    assert serve["duplicate_threshold"] is None and serve["verify"] is True
    assert (serve["max_pixels"], serve["min_inliers"], serve["max_k"], serve["cluster_sample"]) == (
        settings.max_pixels, settings.min_inliers, settings.max_k, settings.cluster_sample)
    assert int(serve["max_upload_mb"] * MB) == settings.max_upload_bytes == D.MAX_UPLOAD_BYTES


def test_numbers_are_written_once() -> None:
    """The literal values of the shared defaults appear in no other module of the library."""
    src = Path(__file__).resolve().parents[1] / "src" / "artenc"
    literals = ["178_956_970", "40_000_000", "min_inliers: int = 15", "k_range: str = \"5:100:2\"",
                "default=15", "default=0.9", "default=0.1,", "default=9,", "default=6,", "default=8,",
                "default=10,", "default=2000", "default=100,", "default=20.0"]
    offenders = [(p.relative_to(src).as_posix(), lit) for p in src.rglob("*.py") if p.name != "defaults.py"
                 for lit in literals if lit in p.read_text(encoding="utf-8")]
    assert offenders == []
