"""Progress reporting: a tqdm bar on a terminal, a log line per step elsewhere."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger("artenc")


class Progress:
    """Counts work done; draws a bar on a TTY, else logs about every `log_every` seconds."""

    def __init__(self, total: int, desc: str, unit: str = "img", log_every: float = 10.0, enabled: bool = True):
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self._bar = None
        self._start = self._last = time.monotonic()
        self._log_every = log_every
        self._enabled = enabled
        if enabled and sys.stderr.isatty():
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self._enabled and (now - self._last >= self._log_every or self.done >= self.total):
            self._last = now
            rate = self.done / max(now - self._start, 1e-9)
            log.info("%s: %d/%d %s (%.1f %s/s)", self.desc, self.done, self.total, self.unit, rate, self.unit)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
