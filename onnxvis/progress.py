"""A progress bar on stderr for long work (many layers, many images), drawn by tqdm.

It draws only when its stream is a terminal, so pipes, log files and CI output stay clean; and tqdm
is imported only then, when a bar is drawn (a piped run and the one-picture commands never load it).
Messages printed while it runs go through :meth:`Progress.write` (``tqdm.write`` under a bar), which
keeps them above the bar.

    with Progress(len(layers), "kernels") as bar:
        for layer in layers:
            ...
            bar.advance(layer.name)
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm

_MIN_INTERVAL = 0.1  # seconds between two redraws
_FALLBACK_SIZE = (80, 24)  # columns, lines


class Progress:
    """Count ``total`` steps and show them as a tqdm bar: label, bar, done/total, elapsed, ETA, rate, item.

    Args:
        total: number of steps.
        label: what the work is, e.g. "kernels".
        stream: where to draw; stderr by default (looked up when the bar is made).
        enabled: force on or off; by default on exactly when ``stream`` is a terminal.
        unit: what a step is, for the rate (e.g. "image" shows images per second).
    """

    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, enabled: bool | None = None, unit: str = "it"
    ) -> None:
        self.total = max(0, int(total))
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            try:
                enabled = bool(isatty and isatty())
            except (ValueError, OSError):  # a closed stream
                enabled = False
        self.enabled = enabled
        self.done = 0
        self._bar: tqdm | None = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from tqdm import tqdm  # here only: the bar is drawn

            # leave=False: the bar's line is cleared on close, the terminal left as it was before it.
            # A terminal that says it is 0x0 (a new pseudo-terminal) would hide tqdm's bar: give it a size.
            sized = _has_size(self.stream)
            self._bar = tqdm(
                total=self.total, desc=self.label, unit=self.unit, file=self.stream, leave=False, mininterval=_MIN_INTERVAL,
                dynamic_ncols=sized, ncols=None if sized else _FALLBACK_SIZE[0], nrows=None if sized else _FALLBACK_SIZE[1],
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def advance(self, item: str = "", steps: int = 1) -> None:
        """Count ``steps`` more steps done; ``item`` names what was just finished."""
        before = self.done
        self.done = min(self.total, self.done + steps) if self.total else self.done + steps
        if self._bar is not None:
            if item:
                self._bar.set_postfix_str(item, refresh=False)
            self._bar.update(self.done - before)

    def write(self, message: str) -> None:
        """Print a message on its own line, keeping the bar below it."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Remove the bar; the terminal is left as it was before it."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _has_size(stream: TextIO) -> bool:
    """Whether the terminal of ``stream`` tells its size (tqdm then follows its width as it changes)."""
    try:
        size = os.get_terminal_size(stream.fileno())
        return size.columns > 0 and size.lines > 0
    except (AttributeError, ValueError, OSError):  # no file descriptor (a StringIO), or not a terminal
        return False
