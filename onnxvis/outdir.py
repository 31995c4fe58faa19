"""Where and how files are written: safe names, inside one folder, atomically.

Every file onnxvis writes goes through :class:`OutputDir`. Names made from node names are sanitised
and made unique here; writes go to a temporary file beside the target and are renamed into place,
so an interrupted run leaves no half-written file. A file that already exists is replaced only if
onnxvis wrote it (it is listed in the folder's manifest), and never if it is one of the inputs.

The manifest, ``.onnxvis-manifest.jsonl`` in the output folder, is append-only: one JSON array
per line, ``[path relative to the folder, size, mtime_ns]`` of a file onnxvis wrote, with a fourth
item, what the file was made from (an image's path), when the writer says it. A file is replaced only
if it still has that size and modification time, so a picture the user edited or put there under the
same name is kept; and a file made from something is replaced only by one made from the same thing,
so that a second run with another photo does not silently replace the first photo's pictures. A
line is added right after its file is renamed into place: writing N files costs O(N), and an
interrupted run can at worst leave a finished file unlisted
(which the next run then refuses to replace: the safe side).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
from pathlib import Path

from onnxvis.errors import OnnxvisError

# Where a command writes when it is given no folder: onnxvis-out/<model name>/ in the working folder.
DEFAULT_PARENT = Path("onnxvis-out")
MANIFEST = ".onnxvis-manifest.jsonl"
TEMP_PREFIX = ".onnxvis-"
_MAX_STEM = 80
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Names Windows reserves whatever the extension ("NUL.png" is the null device there).
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def default_root(model_name: str) -> Path:
    """The output folder of a model when none is given: ``onnxvis-out/<model name>``."""
    return DEFAULT_PARENT / model_name


def sanitize(name: str, fallback: str = "layer") -> str:
    """A file-name-safe version of ``name``: ASCII letters, digits, ``._-``; no leading dot; short.

    Anything else (``/``, ``\\``, ``:``, NUL, control characters, spaces, any non-ASCII letter)
    becomes ``_``; the result has at most 80 characters, never starts or ends with ``.``, ``_`` or
    ``-``, is never a name Windows reserves (``CON`` becomes ``CON_<fallback>``, ``nul.png``
    becomes ``nul_.png``), and is ``fallback`` when nothing is left.
    """
    text = _UNSAFE.sub("_", str(name)).strip("._-")
    text = re.sub(r"_+", "_", text)[:_MAX_STEM].strip("._-")
    head, dot, rest = text.partition(".")
    if head.upper() in _RESERVED:
        # The mark goes before the first dot, which is where Windows stops reading the reserved name;
        # without a dot the fallback follows it, so that the name does not end with the mark.
        text = (f"{head}_{dot}{rest}" if dot else f"{head}_{fallback}")[:_MAX_STEM].strip("._-")
    return text or fallback


def _os_error(what: str, exc: OSError) -> OnnxvisError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        hint = "free some disk space or choose another output folder"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose an output folder you can write to"
    else:
        hint = "check the output folder or choose another"
    return OnnxvisError(f"{what}: {reason}; {hint}", setting="output")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    Whatever interrupts it (an exception, Ctrl-C at any point), ``path`` holds either its old
    content or all of ``data``, and the temporary file is removed. (Only a killed process can leave
    a hidden ``.onnxvis-*.tmp`` file; never a partial ``path``.) The file gets the permissions a
    plain ``open()`` would give (0666 minus the umask).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    temp = None  # set before the file exists, so that an interruption right after it is created still removes it
    try:
        while True:
            temp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(temp, flags, 0o666)
            except FileExistsError:  # not ours: never remove it
                temp = None
                continue
            break
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temp, path)
        temp = None
    except BaseException:
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass
        raise


class OutputDir:
    """One output folder, created on demand, that never lets a write escape it.

    Args:
        root: the folder (created with its parents if missing).
        protect: paths of the user's input files, which are never overwritten.

    Raises:
        OnnxvisError: ``root`` is a file, cannot be created, or cannot be written.
    """

    def __init__(self, root: str | Path, protect: list[str | Path] = ()):  # type: ignore[assignment]
        self.root = Path(root)
        self._protect = [Path(p) for p in protect]
        self._used: set[str] = set()
        self.written: list[Path] = []
        if self.root.exists() and not self.root.is_dir():
            raise OnnxvisError(f"output path {self.root} exists and is not a folder; give a folder", setting="output")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OnnxvisError(
                f"cannot create output folder {self.root}: {exc.strerror or exc}; choose another", setting="output"
            ) from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise OnnxvisError(f"output folder {self.root} is not writable; choose another", setting="output")
        try:
            self._real_root = self.root.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise OnnxvisError(f"cannot use output folder {self.root}: {exc}; choose another", setting="output") from None
        self._sources: dict[str, str] = {}  # path -> what the file was made from, when its writer said
        self._owned = self._read_manifest()

    # ------------------------------------------------------------------------------ the manifest

    def _read_manifest(self) -> dict[str, tuple[int, int]]:
        """What the manifest lists: path -> (size, mtime_ns) of the file as onnxvis left it.

        Empty when the manifest is missing, odd or unreadable: the safe side, since then no existing
        file is replaced. A torn last line (an interrupted append) or junk is skipped. A manifest that
        has grown to more than twice its entries (many reruns) is rewritten, atomically.
        """
        path = self.root / MANIFEST
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return {}
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_MANIFEST_BYTES:
                return {}
            data = f.read(_MAX_MANIFEST_BYTES + 1)
        owned: dict[str, tuple[int, int]] = {}
        lines = data.decode("utf-8", "replace").splitlines()
        for line in lines:
            try:
                rel, size, mtime, *source = json.loads(line)
            except (ValueError, TypeError):
                continue
            if isinstance(rel, str) and isinstance(size, int) and isinstance(mtime, int):
                owned[rel] = (size, mtime)  # the last line of a name wins
                if source and isinstance(source[0], str):
                    self._sources[rel] = source[0]
                else:
                    self._sources.pop(rel, None)
        if len(lines) > 2 * len(owned) + 64:
            text = "".join(
                json.dumps([rel, *entry, *([self._sources[rel]] if rel in self._sources else [])]) + "\n" for rel, entry in owned.items()
            )
            try:
                atomic_write(path, text.encode())
            except OSError:
                pass  # compaction is an optimisation only
        return owned

    def _append_manifest(self, rel: str, st: os.stat_result, made_from: str | None = None) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.root / MANIFEST, flags, 0o666)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(errno.EINVAL, "not a regular file")
                entry = [rel, st.st_size, st.st_mtime_ns, *([made_from] if made_from is not None else [])]
                os.write(fd, (json.dumps(entry) + "\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise _os_error(f"cannot record {rel} in {self.root / MANIFEST}", exc) from None
        self._owned[rel] = (st.st_size, st.st_mtime_ns)
        if made_from is not None:
            self._sources[rel] = made_from
        else:
            self._sources.pop(rel, None)

    def _is_ours(self, rel: str, path: Path) -> bool:
        """Whether ``path`` is a file onnxvis wrote and nobody changed since (same size and mtime)."""
        if rel not in self._owned or path.is_symlink():
            return False
        try:
            st = path.stat()
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and self._owned[rel] == (st.st_size, st.st_mtime_ns)

    # ---------------------------------------------------------------------------------- writing

    def path_for(self, stem: str, suffix: str, subdir: str | None = None) -> Path:
        """A unique path inside the folder for a file named after ``stem`` (sanitised).

        Two stems that sanitise alike (or differ only in case) get ``_2``, ``_3``, ... so that no
        file of this run overwrites another.
        """
        stem = sanitize(stem)
        suffix = suffix if re.fullmatch(r"(\.[A-Za-z0-9]+)*", suffix) else "." + sanitize(suffix, "out")
        folder = sanitize(subdir) if subdir else None
        base = f"{folder}/{stem}" if folder else stem
        candidate, n = base, 2
        while (candidate + suffix).lower() in self._used:
            candidate, n = f"{base}_{n}", n + 1
        self._used.add((candidate + suffix).lower())
        return self.root / (candidate + suffix)

    def _check_target(self, path: Path, made_from: str | None = None) -> str:
        """The path of ``path`` relative to the folder, once it is known safe to (over)write."""
        try:
            real = path.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
            raise OnnxvisError(f"cannot write {path}: {exc}; remove it or choose another output folder", setting="output") from None
        if real.parent != self._real_root and self._real_root not in real.parents:
            raise OnnxvisError(
                f"refusing to write {path} outside the output folder {self.root}; remove the link or choose another output folder",
                setting="output",
            )
        rel = real.relative_to(self._real_root).as_posix()
        if os.path.lexists(path):
            if path.is_dir():
                raise OnnxvisError(f"{path} is a folder; remove it or choose another output folder", setting="output")
            for p in self._protect:
                try:
                    same = os.path.samefile(p, path)
                except OSError:
                    same = False
                if same:
                    raise OnnxvisError(f"{path} is one of the inputs; choose another output folder", setting="output")
            if not self._is_ours(rel, path):
                raise OnnxvisError(
                    f"{path} exists and onnxvis did not write it (or it was changed since); "
                    "remove it or choose another output folder",
                    setting="output",
                )
            before = self._sources.get(rel)
            if made_from is not None and before is not None and before != made_from:
                raise OnnxvisError(
                    f"{path} holds what onnxvis drew from {before}, not from {made_from}; choose another output folder "
                    "for this one, give both in one run (each then gets its own folder), or remove the file",
                    setting="output",
                )
        return rel

    def write_bytes(self, path: Path, data: bytes, made_from: str | None = None) -> Path:
        """Write ``data`` to ``path`` (made by :meth:`path_for`) atomically, and list it in the manifest.

        Args:
            made_from: what the file shows, e.g. the resolved path of the image whose feature maps it
                holds; recorded, and an existing file made from something else is not replaced.

        Raises:
            OnnxvisError: ``path`` escapes the folder, is an input, exists without onnxvis having
                written it or was made from something else, or cannot be written (no space, no permission, ...).
        """
        path = Path(path)
        rel = self._check_target(path, made_from)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError as exc:
            raise _os_error(f"cannot write {path}", exc) from None
        try:
            st = path.stat()
        except OSError as exc:
            raise _os_error(f"cannot check {path} after writing it", exc) from None
        if self._owned.get(rel) != (st.st_size, st.st_mtime_ns) or self._sources.get(rel) != made_from:
            self._append_manifest(rel, st, made_from)
        self.written.append(path)
        return path

