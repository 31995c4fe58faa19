"""The one exception type for user mistakes.

The CLI prints an :class:`OnnxvisError` as ``onnxvis: error: <message>`` and exits with code 2.
Anything else that escapes is a bug in onnxvis, not in the user's input.
"""

from __future__ import annotations


class OnnxvisError(Exception):
    """A problem with the user's input, worded so that the user knows what to do next.

    The message is one line: what is wrong, then what to do about it, in the library's words
    (models, arrays, files, parameters). ``setting`` names the parameter the mistake is about
    (e.g. "nrow", "preset", "layers"), so that the command line can add the flag that sets it.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


def printable(text: str) -> str:
    """``text`` with every non-printable character (newline, NUL, ESC, ...) shown escaped, e.g. ``\\x1b``,
    so that a name from a model file can neither break a line nor drive the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def one_line(text: str) -> str:
    """``text`` as one printable line: whitespace runs become one space, other control characters
    are shown escaped (see :func:`printable`)."""
    return printable(" ".join(str(text).split()))
