"""Property: whatever the file names and contents of a folder, `embed_folders` never crashes,
every file found has exactly one outcome (the accounting invariant), every stored path opens,
and a re-run finds every file unchanged.

Names: random bytes (invalid UTF-8 included), NFD and NFC accents, spaces, leading dots
(hidden: ignored), long names, other scripts; contents: JPEG, PNG, text, empty, truncated.
A fixed seed and example budget keep it short; `-m slow` runs a larger budget.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from artenc.embedding import embed_folders
from artenc.images import name_problem
from artenc.store import Store
from tests.conftest import painting

_TOKENS = list("abcXYZ019 _-()[]'.") + ["\u00e9", "e\u0301", "\u00fc", "\u65e5\u672c", "\u0416", "\u0627",
                                            "\U0001f3a8"]
_TEXT = st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=30).map("".join)
_NAME_TEXT = st.one_of(
    _TEXT.map(lambda t: unicodedata.normalize("NFD", t).encode()),
    _TEXT.map(lambda t: unicodedata.normalize("NFC", t).encode()),
    st.binary(min_size=1, max_size=30).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_")),
    st.integers(100, 200).map(lambda n: b"long" * (n // 4)),  # long names
)
_EXTENSIONS = st.sampled_from([b"", b".jpg", b".JPG", b".png", b".jfif", b".txt", b".jpg_large", b".csv"])
_CONTENTS = st.sampled_from(["jpeg", "png", "text", "empty", "truncated"])
_FILES = st.lists(
    st.tuples(_NAME_TEXT, _EXTENSIONS, _CONTENTS, st.integers(0, 50)), min_size=1, max_size=5,
    unique_by=lambda f: f[0] + f[1],
)


def _content(kind: str, seed: int) -> bytes:
    if kind in ("text", "empty"):
        return b"" if kind == "empty" else b"name,value\nx,1\n" * (seed + 1)
    buffer = io.BytesIO()
    painting(seed, (48 + seed, 32)).save(buffer, "PNG" if kind == "png" else "JPEG")
    data = buffer.getvalue()
    return data[: len(data) // 3] if kind == "truncated" else data


def _check(files: list[tuple[bytes, bytes, str, int]], encoder) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.fsencode(tmp) + b"/images"
        os.mkdir(folder)
        names = {stem + ext for stem, ext, _, _ in files}
        if any(n in (b".", b"..") or len(n) > 255 for n in names):
            return
        for stem, ext, kind, seed in files:
            with open(folder + b"/" + stem + ext, "wb") as f:
                f.write(_content(kind, seed))
        visible = sum(not n.startswith(b".") for n in names)
        out = Path(tmp) / "store"

        report = embed_folders([os.fsdecode(folder)], out, encoder=encoder, workers=0, progress=False)
        assert report.discovered == visible == report.outcome_total()
        for outcome in ("embedded", "skipped", "not_images"):
            event(f"{outcome}: {'some' if getattr(report, outcome) else 'none'}")
        event(f"a name not UTF-8: {any(name_problem(os.fsdecode(n)) for n in names)}")
        assert report.skipped == len(report.skipped_files) and report.not_images == len(report.not_image_files)
        json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")  # valid Unicode throughout
        if report.total:
            store = Store.open(out)
            for path in store.items["path"]:
                assert Path(path).read_bytes()  # every stored path opens
            assert store.summary()["last_embed"]["outcomes"] == report.outcomes()
        else:
            assert report.embedded == report.reused == 0

        again = embed_folders([os.fsdecode(folder)], out, encoder=encoder, workers=0, progress=False)
        # skipped files are tried again (and skipped again): nothing new is embedded
        assert (again.discovered, again.unchanged + again.skipped + again.not_images) == (visible, visible)
        assert again.embedded == again.reused == 0
        assert again.removed == 0


@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(files=_FILES)
def test_embed_accounts_for_every_name(files, lite0_encoder) -> None:
    _check(files, lite0_encoder)


@pytest.mark.slow
@settings(max_examples=150, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(files=_FILES)
def test_embed_accounts_for_every_name_large_budget(files, lite0_encoder) -> None:
    _check(files, lite0_encoder)
