"""A tiny progress bar on stderr for long work: many layers, many images.

It draws only when its stream is a terminal, so pipes, log files and CI output stay clean. Messages
printed while it runs go through :meth:`Progress.write`, which clears the bar's line first.

    with Progress(len(layers), "kernels") as bar:
        for layer in layers:
            ...
            bar.advance(layer.name)
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 24
_MIN_INTERVAL = 0.1  # seconds between two redraws (the last step always draws)


class Progress:
    """Count ``total`` steps and show ``label [#####.....] done/total item`` on one line.

    Args:
        total: number of steps.
        label: what the work is, e.g. "kernels".
        stream: where to draw; stderr by default (looked up when the bar is made).
        enabled: force on or off; by default on exactly when ``stream`` is a terminal.
    """

    def __init__(self, total: int, label: str, stream: TextIO | None = None, enabled: bool | None = None):
        self.total = max(0, int(total))
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            try:
                enabled = bool(isatty and isatty())
            except (ValueError, OSError):  # a closed stream
                enabled = False
        self.enabled = enabled
        self.done = 0
        self._drawn = False
        self._last_draw = 0.0
        self._width = 0

    def __enter__(self) -> "Progress":
        self._draw("")
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def advance(self, item: str = "", steps: int = 1) -> None:
        """Count ``steps`` more steps done; ``item`` names what was just finished."""
        self.done = min(self.total, self.done + steps) if self.total else self.done + steps
        now = time.monotonic()
        if self.done >= self.total or now - self._last_draw >= _MIN_INTERVAL:
            self._draw(item)

    def write(self, message: str) -> None:
        """Print a message on its own line, keeping the bar below it."""
        if self.enabled and self._drawn:
            self._clear()
            self.stream.write(message + "\n")
            self._draw("")
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Remove the bar; the terminal is left as it was before it."""
        if self.enabled and self._drawn:
            self._clear()
            self._drawn = False

    def line(self, item: str = "") -> str:
        """The text of the bar, as it is drawn now."""
        filled = _WIDTH if not self.total else _WIDTH * self.done // self.total
        bar = "#" * filled + "." * (_WIDTH - filled)
        text = f"{self.label} [{bar}] {self.done}/{self.total}"
        return f"{text} {item}" if item else text

    def _draw(self, item: str) -> None:
        if not self.enabled:
            return
        text = self.line(item)[:_terminal_columns() - 1]
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)
        self._drawn = True
        self._last_draw = time.monotonic()

    def _clear(self) -> None:
        self.stream.write("\r" + " " * self._width + "\r")
        self.stream.flush()
        self._width = 0


def _terminal_columns() -> int:
    import shutil

    return max(20, shutil.get_terminal_size((80, 24)).columns)
