"""Library parameter names as command-line flags: the CLI's side of `artenc.errors.ParameterError`.

The library names *parameters* (``max_pixels``, ``threshold``) in its exceptions and messages;
the commands name the flags the user typed. Its own module so that command modules use it
without importing the dispatcher (`artenc.cli`), which imports them.
"""

from __future__ import annotations

import re

from artenc.errors import ArtencError, ParameterError

# The one table from library parameter names to command-line flags. The library raises
# ParameterError(param, problem) in Python terms; the CLI names the flag the user typed.
FLAG_OF = {
    "k": "-k",
    "k_range": "--k-range",
    "sample_size": "--sample-size",
    "threshold": "--threshold",
    "floor": "--floor",
    "top_m": "--top-m",
    "min_inliers": "--min-inliers",
    "across": "--across",
    "column": "--across",
    "out_dir": "--copy-unique-to",
    "out": "--out",
    "batch_size": "--batch-size",
    "flush_every": "--flush-every",
    "dtype": "--dtype",
    "workers": "--workers",
    "max_pixels": "--max-pixels",
    "max_aspect_ratio": "--max-aspect-ratio",
    "device": "--device",
    "runtime": "--runtime",
    "model": "--model",
    "weights": "--weights",
    "labels": "--labels",
    "kind": "--kind",
    "fields": "--field",
    "field": "--field",
    "query_split": "--query-split",
    "gallery_split": "--gallery-split",
    "split_column": "--split-column",
    "verify_top": "--verify-top",
    "method": "--method",
    "color_by": "--color-by",
    "max_upload_bytes": "--max-upload-mb",
    "max_k": "--max-k",
    "min_size": "--min-size",
    "thumbs": "--thumbs",
    "extra": "--set",
    "limit": "--limit",
    "duplicate_threshold": "--duplicate-threshold",
    "coords": "--coords",
    "radius": "--radius",
    "eps": "--eps",
    "min_samples": "--min-samples",
    "min_cluster_size": "--min-cluster-size",
    "folds": "--folds",
    "top": "--top",
    "shard": "--shard",
}


def user_message(exc: ArtencError) -> str:
    """The message the CLI prints for a library error: parameter names become flags."""
    if isinstance(exc, ParameterError):
        return f"{FLAG_OF.get(exc.param, exc.param)} {exc.problem}"
    return str(exc)


# how library messages name a limit the user may lift: "(raise max_pixels to allow it)"
_RAISE_HINT = re.compile(r"\braise (\w+) to allow it\b")


def flag_text(text: str) -> str:
    """`text` (a library message, e.g. a file's skip reason) with the parameters it tells the
    user to raise named by their flags (`FLAG_OF`): "raise max_pixels to allow it" becomes
    "raise --max-pixels to allow it"."""
    return _RAISE_HINT.sub(lambda m: f"raise {FLAG_OF.get(m[1], m[1])} to allow it", text)
