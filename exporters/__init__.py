"""Exporters: the only part of onnxvis that imports torch and torchvision.

Importing this package stays light (no torch); :func:`export_model` and :class:`ExportResult` are
loaded from :mod:`exporters.torchvision_export` on first use.
"""

from __future__ import annotations

__all__ = ["ExportResult", "export_model"]


def __getattr__(name: str):
    if name in __all__:
        from exporters import torchvision_export

        return getattr(torchvision_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
