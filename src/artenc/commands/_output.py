"""The JSON output of the commands (`--json`): one document on stdout, nothing else there.

Its own module so that command modules import it without importing the dispatcher
(`artenc.cli`), which imports them.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(document: Any) -> None:
    """Write one JSON document to stdout (the only thing on stdout with --json).

    Indented by 2; values JSON cannot hold (paths, numpy scalars) are written with `str`;
    NaN and infinity raise ValueError (`allow_nan=False`): documents hold None instead.
    """
    json.dump(document, sys.stdout, indent=2, default=str, allow_nan=False)
    sys.stdout.write("\n")
    sys.stdout.flush()
