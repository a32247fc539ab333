"""A dependency-free progress bar for the training loop, evaluation and prediction."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """A dependency-free progress bar on stderr.

    On a terminal it redraws one line; otherwise (logs, CI) it prints a line at every
    tenth of the way, so logs stay short. ``enabled=False`` silences it.

    Args:
        total: the number of steps to come.
        desc: the title in front of the bar.
        enabled: draw anything at all.
    """

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self.total, self.desc, self.enabled = max(1, total), desc, enabled
        self.done = 0
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_tenth = -1
        self.postfix = ""

    def update(self, n: int = 1, postfix: str = "") -> None:
        """Count ``n`` more steps done and redraw; ``postfix`` replaces the text after
        the bar (an empty one keeps the last)."""
        self.done += n
        self.postfix = postfix or self.postfix
        if not self.enabled:
            return
        fraction = min(1.0, self.done / self.total)
        elapsed = time.perf_counter() - self.start
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        bar = "#" * int(20 * fraction)
        line = (
            f"{self.desc} [{bar:<20}] {self.done}/{self.total} "
            f"{elapsed:5.1f}s<{eta:5.1f}s {self.postfix}"
        )
        if self.tty:
            sys.stderr.write("\r" + line[:150])
            sys.stderr.flush()
        elif int(10 * fraction) > self._last_tenth:
            self._last_tenth = int(10 * fraction)
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the terminal line the bar was drawn on."""
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
