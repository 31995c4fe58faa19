"""Where and how files are written: safe names, inside one folder, atomically.

Every file onnxvis writes goes through :class:`OutputDir`. Names made from node names are sanitised
and made unique here; writes go to a temporary file beside the target and are renamed into place,
so an interrupted run leaves no half-written file. A file that already exists is replaced only if
onnxvis wrote it (it is listed in the folder's manifest), and never if it is one of the inputs.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from onnxvis.errors import OnnxvisError

MANIFEST = ".onnxvis-manifest.json"
_MAX_STEM = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; finished outputs get the permissions a plain open() would give.
_FILE_MODE = 0o666 & ~_current_umask()


def sanitize(name: str, fallback: str = "layer") -> str:
    """A file-name-safe version of ``name``: ASCII letters, digits, ``._-``; no leading dot; short."""
    text = _UNSAFE.sub("_", name).strip("._-")
    text = re.sub(r"_+", "_", text)[:_MAX_STEM].strip("._-")
    return text or fallback


class OutputDir:
    """One output folder, created on demand, that never lets a write escape it.

    Args:
        root: the folder (created with its parents if missing).
        protect: paths of the user's input files, which are never overwritten.
    """

    def __init__(self, root: str | Path, protect: list[str | Path] = ()):  # type: ignore[assignment]
        self.root = Path(root)
        self._protect = [Path(p) for p in protect]
        self._used: set[str] = set()
        self.written: list[Path] = []
        if self.root.exists() and not self.root.is_dir():
            raise OnnxvisError(f"output path {self.root} exists and is not a folder; give a folder with -o")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OnnxvisError(f"cannot create output folder {self.root}: {exc.strerror}; choose another with -o") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise OnnxvisError(f"output folder {self.root} is not writable; choose another with -o")
        self._real_root = self.root.resolve()
        self._owned = self._read_manifest()

    def _read_manifest(self) -> set[str]:
        try:
            data = json.loads((self.root / MANIFEST).read_text())
            return {str(n) for n in data.get("files", [])}
        except (OSError, ValueError, AttributeError):
            return set()

    def path_for(self, stem: str, suffix: str, subdir: str | None = None) -> Path:
        """A unique path inside the folder for a file named after ``stem`` (sanitised)."""
        stem = sanitize(stem)
        folder = sanitize(subdir) if subdir else None
        base = f"{folder}/{stem}" if folder else stem
        candidate, n = base, 2
        while (candidate + suffix).lower() in self._used:
            candidate, n = f"{base}_{n}", n + 1
        self._used.add((candidate + suffix).lower())
        return self.root / (candidate + suffix)

    def _check_target(self, path: Path) -> str:
        real = path.resolve()
        if real.parent != self._real_root and self._real_root not in real.parents:
            raise OnnxvisError(f"refusing to write {path} outside the output folder {self.root}")
        rel = real.relative_to(self._real_root).as_posix()
        if path.exists() or path.is_symlink():
            if any(p.exists() and os.path.samefile(p, path) for p in self._protect):
                raise OnnxvisError(f"{path} is one of the inputs; choose another output folder with -o")
            if rel not in self._owned:
                raise OnnxvisError(f"{path} exists and onnxvis did not write it; remove it or choose another folder with -o")
        return rel

    def write_bytes(self, path: Path, data: bytes) -> Path:
        """Write ``data`` to ``path`` (made by :meth:`path_for`) atomically."""
        rel = self._check_target(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".onnxvis-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._owned.add(rel)
        self._save_manifest()
        self.written.append(path)
        return path

    def _save_manifest(self) -> None:
        data = json.dumps({"written_by": "onnxvis", "files": sorted(self._owned)}, indent=0).encode()
        fd, tmp = tempfile.mkstemp(prefix=".onnxvis-", suffix=".tmp", dir=self.root)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, self.root / MANIFEST)

    def save_png(self, pixels: np.ndarray, stem: str, subdir: str | None = None) -> Path:
        """Encode uint8 pixels (H, W) grey or (H, W, 3) RGB as a PNG and write it atomically."""
        return self.write_bytes(self.path_for(stem, ".png", subdir), encode_png(pixels))


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of uint8 pixels (H, W) or (H, W, 3)."""
    from PIL import Image, PngImagePlugin

    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(f"expected uint8 pixels (H, W) or (H, W, 3), got {pixels.dtype} {pixels.shape}")
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "onnxvis")
    buffer = io.BytesIO()
    # Level 1 compresses a kernel grid to within a few percent of level 6, several times faster.
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info, compress_level=1)
    return buffer.getvalue()


def save_png(grid: np.ndarray, path: str | Path) -> Path:
    """Save a grid to ``path`` as torchvision's ``save_image`` would, atomically.

    Args:
        grid: float (C, H, W) in [0, 1] from :mod:`onnxvis.grids`, or uint8 pixels (H, W[, 3]).
        path: the PNG to write; its folder must exist.
    """
    from onnxvis.grids import to_uint8

    pixels = grid if grid.dtype == np.uint8 else to_uint8(grid)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".onnxvis-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(encode_png(pixels))
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
