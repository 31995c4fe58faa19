"""Exporters: the only part of onnxvis that imports torch and torchvision.

Importing this package stays light (no torch); :func:`export_model` and :class:`ExportResult` are
loaded from :mod:`exporters.torchvision_export` on first use.
"""

from __future__ import annotations

__all__ = ["ExportResult", "export_model", "missing_dependencies"]

# What exporting needs beyond the core, as the `export` extra installs it.
DEPENDENCIES = ("torch", "torchvision", "onnxscript")


def missing_dependencies() -> list[str]:
    """The packages of the ``export`` extra that cannot be imported here (empty when all can).

    Importing, not just finding, catches a package that is installed but broken, or blocked.
    """
    import importlib

    missing = []
    for name in DEPENDENCIES:
        try:
            importlib.import_module(name)
        except (ImportError, OSError):  # OSError: a native library of the package fails to load
            missing.append(name)
    return missing


def __getattr__(name: str):
    if name in ("ExportResult", "export_model"):
        from exporters import torchvision_export

        return getattr(torchvision_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
