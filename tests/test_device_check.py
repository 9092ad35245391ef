"""scripts/device_check.sh (the GPU check): valid bash, and it refuses bad input with exit 2.
Its full `--cpu` mode (embed with torch vs ONNX Runtime, one training epoch) runs by hand:
`scripts/device_check.sh --cpu --n 40 --per-style 8` (a few minutes on 2 cores)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_bad_input_exits_2(tmp_path: Path) -> None:
    bad = _run("--frobnicate")
    assert bad.returncode == 2 and "unknown argument --frobnicate" in bad.stderr
    assert _run("--n", "many").returncode == 2
    missing = _run("--cpu", ARTENC_WIKIART=str(tmp_path / "absent"))
    assert missing.returncode == 2 and "WikiArt not found" in missing.stderr
    assert "--per-style" in _run("--help").stdout
