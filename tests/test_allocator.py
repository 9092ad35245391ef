"""cpu_allocator=keep_freed (artenc.models.allocator): glibc keeps freed blocks for reuse, so a
repeated large allocation stops faulting its pages in again; a bad value is refused early."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

_CHILD = """
import resource, sys, torch
from artenc.models.allocator import apply_allocator
applied = apply_allocator(sys.argv[1])
def churn():  # what a training step does: allocate and free blocks above the mmap threshold (32 MiB)
    for _ in range(5):
        x = torch.ones(16 << 20)  # 64 MiB
        del x
churn(), churn()  # warm-up: the heap grows to its working size
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(choice: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _CHILD, choice], check=True, capture_output=True, text=True).stdout
    applied, faults = out.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not GLIBC, reason="mallopt settings are glibc's")
def test_keep_freed_stops_refaulting_large_blocks():
    applied, default = _faults("default")
    assert not applied
    applied, kept = _faults("keep_freed")
    assert applied
    # 5 x 64 MiB = 81,920 pages of 4 KiB faulted again under the default settings
    assert default > 40_000 and kept < default / 10


def test_cpu_allocator_value_is_checked_before_any_work(tmp_path):
    from artenc.errors import ParameterError
    from artenc.models.allocator import apply_allocator
    from artenc.training import compose_config, validate_config

    (tmp_path / "labels.csv").write_text("path,label\n")
    with pytest.raises(ParameterError, match="^cpu_allocator must be one of keep_freed, default, got 'jemalloc'"):
        validate_config(compose_config([f"data.root={tmp_path}", "cpu_allocator=jemalloc"]))
    with pytest.raises(ValueError, match="cpu_allocator must be one of"):
        apply_allocator("tcmalloc")
    assert compose_config([f"data.root={tmp_path}"]).cpu_allocator == "keep_freed"
