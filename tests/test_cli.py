"""The CLI contract: sub-commands listed, exit codes, --json prints one document only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from artenc.cli import build_parser, main


def test_help_lists_core_commands(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("embed", "info", "demo"):
        assert name in out


def test_bad_arguments_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["embed"])  # missing IMAGES_DIR and --out
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    assert main([]) == 2


def test_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.format_help().strip(), name


def test_json_stdout_is_one_document(gallery: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "artenc.cli", "embed", str(gallery), "--out", str(tmp_path / "s"),
         "--workers", "0", "--json"],
        capture_output=True, text=True, check=True,
    )
    doc = json.loads(proc.stdout)  # would fail on any stray print
    assert doc["embedded"] == 12
    assert "images found" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "artenc.cli", "info", str(tmp_path / "missing"), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == "" and "store not found" in proc.stderr


def test_building_the_cli_imports_no_heavy_library():
    """`artenc --help` and argument errors answer at once: building the parser imports neither
    torch nor the jobs (each command imports them inside `run`)."""
    import subprocess
    import sys

    code = ("import sys, artenc.cli; artenc.cli.build_parser(); "
            "heavy = [m for m in ('torch', 'onnxruntime', 'faiss', 'artenc.collection') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_info_imports_only_what_it_needs(tmp_path: Path) -> None:
    """`artenc info --json` counts from Parquet footers and meta.json: it imports no other
    command's module, neither pandas nor torch nor FAISS, not even importlib.metadata (the
    version is read only for --version), and prints the same document as `Store.summary`."""
    import numpy as np

    from artenc.store import Store
    from tests.helpers_store import SIGNATURE, toy_rows

    store = Store.create(tmp_path / "s", SIGNATURE)
    with store.writing():
        store.append_segment(toy_rows("a", 3), np.eye(3, 4, dtype=np.float32))
        store.append_segment(toy_rows("b", 2), np.eye(2, 4, dtype=np.float32))
    code = ("import sys, artenc.cli; code = artenc.cli.main(['info', sys.argv[1], '--json']); "
            "heavy = ('pandas', 'torch', 'faiss', 'onnxruntime', 'importlib.metadata', 'artenc.index', "
            "'artenc.commands.embed', 'artenc.commands.similar'); "
            "print([m for m in heavy if m in sys.modules], file=sys.stderr); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, check=True)
    assert proc.stderr.strip().splitlines()[-1] == "[]"
    assert json.loads(proc.stdout) == json.loads(json.dumps(Store.open(store.root).reload().summary()))
    assert json.loads(proc.stdout)["count"] == 5
    version = subprocess.run([sys.executable, "-m", "artenc.cli", "--version"], capture_output=True, text=True)
    import artenc

    assert version.returncode == 0 and version.stdout == f"artenc {artenc.__version__}\n"


def test_similar_of_a_stored_work_imports_no_torch(tmp_path: Path) -> None:
    """A stored path needs no encoder: `artenc similar` (and everything importing
    `artenc.collection`) leaves torch and the encoder runtime unimported (~1.4 s of CPU and
    ~450 MB of memory per command); a new image file would import them."""
    import numpy as np

    from artenc.store import Store
    from tests.helpers_store import SIGNATURE, toy_rows

    store = Store.create(tmp_path / "s", SIGNATURE)
    with store.writing():
        store.append_segment(toy_rows("a", 4), np.eye(4, 4, dtype=np.float32) + 0.1)
    code = ("import sys, artenc.cli; code = artenc.cli.main(['similar', sys.argv[1], '/x/a/000.jpg', '-k', '2', "
            "'--json']); print([m for m in ('torch', 'onnxruntime', 'artenc.runtime', 'artenc.embedding') "
            "if m in sys.modules], file=sys.stderr); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True, text=True, check=True)
    assert proc.stderr.strip().splitlines()[-1] == "[]"
    assert [n["path"] for n in json.loads(proc.stdout)["results"][0]["neighbors"]] == ["/x/a/001.jpg", "/x/a/002.jpg"]


def test_one_command_builds_only_its_own_parser() -> None:
    assert list(next(a for a in build_parser("info")._actions if a.dest == "command").choices) == ["info"]
    every = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert {"info", "similar", "embed", "index", "store"} <= set(every)
    assert list(next(a for a in build_parser("no-such")._actions if a.dest == "command").choices) == list(every)


def test_closed_stdout_pipe_exits_quietly(tmp_path: Path) -> None:
    """`artenc info STORE | head -0`: the reader is gone before anything is written; the run
    ends with 141 (128 + SIGPIPE) and no BrokenPipeError traceback on stderr."""
    import numpy as np

    from artenc.store import Store
    from tests.helpers_store import SIGNATURE, toy_rows

    store = Store.create(tmp_path / "s", SIGNATURE)
    with store.writing():
        store.append_segment(toy_rows("a", 3), np.eye(3, 4, dtype=np.float32))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "artenc.cli", "info", str(tmp_path / "s")],
                              stdout=write_end, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr


def test_loading_timm_does_not_import_wandb() -> None:
    """timm's `timm.utils.summary` tries `import wandb` (a second, console hooks); commands that
    load an encoder go through `import_timm`, which hides it. Training still imports wandb."""
    code = ("import sys; from artenc.backbones.timm_any import import_timm; import_timm(); "
            "print('wandb' in sys.modules); import importlib.util; "
            "print(importlib.util.find_spec('wandb') is None or __import__('wandb') is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_info_shows_quantization_and_tells_running_from_stopped_shards(tmp_path: Path, capsys) -> None:
    """M5: `info` names an int8 store's quantization (text; --json gains the key only then).
    M6: an unfinished shard whose process holds a live writer mark is "still running"; one
    whose process is gone "stopped unfinished"; one never started "has not started"."""
    import dataclasses
    import socket

    import numpy as np

    from artenc.shards import Shard
    from artenc.store import Store
    from tests.helpers_store import SIGNATURE, toy_rows

    plain = Store.create(tmp_path / "plain", SIGNATURE)
    plain.append_segment(toy_rows("p", 2), np.eye(2, 4, dtype=np.float32))
    assert main(["info", str(tmp_path / "plain"), "--json"]) == 0
    assert "quantization" not in json.loads(capsys.readouterr().out)
    int8 = Store.create(tmp_path / "int8", dataclasses.replace(SIGNATURE, quantization="int8"))
    int8.record_shard(Shard(0, 3), {"state": "running", "host": socket.gethostname(), "pid": os.getpid()})
    int8.record_shard(Shard(1, 3), {"state": "running", "host": socket.gethostname(), "pid": 2**22 + 7})
    assert main(["info", str(tmp_path / "int8"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["quantization"] == "int8"
    with int8.writing():  # shard 0's process (this one) is alive and writing
        assert Store.open(tmp_path / "int8").running_shards() == [0]
        assert main(["info", str(tmp_path / "int8")]) == 0
        out = capsys.readouterr().out
    assert "quantization int8" in out
    assert ("incomplete: shard 0 is still running; shard 1 stopped unfinished (run it again); "
            "shard 2 has not started") in out
    assert Store.open(tmp_path / "int8").running_shards() == []  # the writer ended
