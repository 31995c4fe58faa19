"""``--format``'s list, read the same way by every command that writes several kinds of file."""

from __future__ import annotations

from collections.abc import Sequence

from onnxvis.errors import OnnxvisError

__all__ = ["parse_format_list"]


def parse_format_list(formats: str | Sequence[str], allowed: Sequence[str], example: str) -> tuple[str, ...]:
    """``"png,npy"`` -> ``("png", "npy")``: trimmed, lower-case, each once, every one in ``allowed``.

    Raises:
        OnnxvisError: an unknown format, or none (setting ``formats``).
    """
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen = tuple(dict.fromkeys(i.strip().lower() for i in items if i.strip()))
    unknown = [i for i in chosen if i not in allowed]
    if unknown or not chosen:
        raise OnnxvisError(
            f"unknown output format {unknown[0] if unknown else ''!r}; choose from {', '.join(allowed)}, e.g. {example}",
            setting="formats",
        )
    return chosen
