"""Module layering: the evaluation table's new home, and scripts/import_graph.py on a package
with a known import cycle and known function-local imports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from artenc.report.tables import evaluation_table

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"


def test_evaluation_table_one_row_per_store_and_field():
    metrics = {"p_at_k": 0.5, "map_at_k": 0.25, "r_at_k": 1.0, "knn_accuracy": None,
               "linear_probe_accuracy": 0.12345, "n_queries": 7}
    reports = [{"store": "a", "model": "lite0", "fields": {"style": metrics, "genre": metrics}},
               {"store": "b", "fields": {"style": metrics}}]
    lines = evaluation_table(reports, 5).splitlines()
    assert lines[0] == "| store | model | field | P@5 | mAP@5 | R@5 | kNN acc | linear probe | queries |"
    assert lines[1] == "|---|---|---|---|---|---|---|---|---|"
    assert lines[2] == "| a | lite0 | style | 0.500 | 0.250 | 1.000 | - | 0.123 | 7 |"
    assert [line.split(" | ")[:3] for line in lines[3:]] == [["| a", "lite0", "genre"], ["| b", "None", "style"]]


def test_import_graph_reports_cycles_and_local_imports(tmp_path):
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(textwrap.dedent("""
        import json
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from cyclepkg import c


        def f():
            from cyclepkg import b
            import os, sys

            if TYPE_CHECKING:
                import collections
            return b, os, sys, json
    """))
    (pkg / "b.py").write_text("from cyclepkg import a\n")
    (pkg / "c.py").write_text("from cyclepkg import b\n\n\nclass K:\n    def m(self):\n        import json\n")
    out = subprocess.run([sys.executable, str(SCRIPT), "cyclepkg", "--list"], env={**os.environ, "PYTHONPATH": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout
    assert "1 strongly connected component(s)" in out
    assert "2 modules: cyclepkg.a, cyclepkg.b" in out
    assert "cyclepkg.a -> cyclepkg.b  line 10 (local)" in out
    assert "cyclepkg.b -> cyclepkg.a  line 1\n" in out
    # a: `from cyclepkg import b` and `import os, sys` (the TYPE_CHECKING ones are left out); c: `import json`
    assert "function-local imports: 3 in 2 module(s)" in out
    assert "line 11: os, sys" in out and "line 6: json" in out
