"""scripts/eval_wikiart.py (the holdout table of the README's WikiArt results) runs end to end:
a real subprocess on a generated folder with the WikiArt layout (images/, labels.csv with
style and split), both stores embedded, four reports written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_colour_classes

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_wikiart.py"


def test_eval_wikiart_writes_the_four_reports(tmp_path: Path) -> None:
    data = write_colour_classes(tmp_path / "data")
    out = tmp_path / "reports.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--encoder", "tf_efficientnet_lite0", "--data", str(data),
         "--work", str(tmp_path / "work"), "--json", str(out)],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    reports = json.loads(out.read_text())
    assert [r["store"] for r in reports] == [
        "raw (holdout -> holdout, leave-one-out)", "raw (holdout -> dev)",
        "trained (holdout -> holdout, leave-one-out)", "trained (holdout -> dev)"]
    dev = reports[1]["fields"]["style"]
    assert (dev["n_queries"], dev["n_gallery"], dev["knn_accuracy"]) == (3, 15, 1.0)  # three colours, one holdout work each
    assert "| raw (holdout -> dev) |" in run.stdout
