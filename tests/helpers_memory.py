"""Peak-memory helpers shared by the decode memory tests."""

from __future__ import annotations

from functools import cache


@cache
def can_reset_peak_rss() -> bool:
    """Whether this kernel lets a process reset its peak RSS (`/proc/self/clear_refs` = 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
