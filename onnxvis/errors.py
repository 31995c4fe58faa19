"""The one exception type for user mistakes.

The CLI prints an :class:`OnnxvisError` as ``onnxvis: error: <message>`` and exits with code 2.
Anything else that escapes is a bug in onnxvis, not in the user's input.
"""

from __future__ import annotations


class OnnxvisError(Exception):
    """A problem with the user's input, worded so that the user knows what to do next.

    The message is one line: what is wrong, then what to do about it.
    """
