"""A small progress bar on stderr: redrawn in place on a terminal, a few lines otherwise, silent if quiet."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, quiet: bool = False, stream=None, initial: int = 0):
        self.label, self.total, self.quiet = label, max(0, int(total)), quiet
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done, self.start, self._last = initial, time.perf_counter(), -1.0
        self._draw()

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        self._draw()

    def _draw(self, final: bool = False) -> None:
        if self.quiet:
            return
        frac = self.done / self.total if self.total else 1.0
        now = time.perf_counter()
        if self.tty:
            if not final and now - self._last < 0.1 and self.done < self.total:
                return
            bar = "#" * int(frac * 24)
            self.stream.write(f"\r{self.label:<10} [{bar:<24}] {self.done}/{self.total} "
                              f"{now - self.start:6.1f}s")
            self.stream.flush()
        else:  # non-interactive: one line per quarter
            quarter = int(frac * 4)
            if final or quarter > self._last:
                if not final and quarter == 4:
                    return
                self.stream.write(f"{self.label}: {self.done}/{self.total} ({now - self.start:.1f}s)\n")
        self._last = now if self.tty else float(int(frac * 4))

    def close(self) -> float:
        elapsed = time.perf_counter() - self.start
        if not self.quiet:
            self._draw(final=True)
            if self.tty:
                self.stream.write("\n")
        return elapsed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
