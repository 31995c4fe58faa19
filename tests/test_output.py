"""OutputDir: safe names, no collisions, atomic writes, the manifest, protected inputs."""

from __future__ import annotations

import errno
import json
import os
import re
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from onnxvis import outdir as output
from onnxvis.errors import OnnxvisError
from onnxvis.outdir import MANIFEST, OutputDir, sanitize
from onnxvis.write.png import save_png, write_png

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # no leading dot or dash, nothing else
PIXELS = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def _temps(folder) -> list[str]:
    return [n for n in _files(folder) if os.path.basename(n).startswith(output.TEMP_PREFIX) and n.endswith(".tmp")]


# ------------------------------------------------------------------------------------ sanitize


@pytest.mark.parametrize(
    "name",
    ["../../../tmp/x", "/etc/passwd", "a\\b\\c", "C:\\Windows\\x", "nul\x00byte", "ctl\x01\x1b[31m\r\n\t",
     "x" * 300, "层 🚀 é\u202eabc", ".hidden", "..", ".", "", "   ", "-rf", "CON", "nul.png", "com1"],
)
def test_sanitize_gives_a_plain_short_name(name):
    clean = sanitize(name)
    assert SAFE.fullmatch(clean), clean
    assert len(clean) <= 80
    assert clean.split(".")[0].upper() not in {"CON", "NUL", "COM1", "PRN", "AUX"}


def test_sanitize_keeps_ordinary_names_and_uses_the_fallback_for_nothing():
    assert sanitize("features.0-conv_1") == "features.0-conv_1"
    assert sanitize("../..") == "layer"
    assert sanitize("🚀", fallback="x") == "x"


# Each promise of sanitize's docstring, with an input that would break it.
@pytest.mark.parametrize(
    "name, expected",
    [
        # ASCII letters, digits and ._- are kept; anything else becomes _ (runs of it one _)
        ("features.0-conv_1", "features.0-conv_1"),
        ("a/b\\c:d\x00e\x01f g", "a_b_c_d_e_f_g"),
        ("层 🚀 é\u202eabc", "abc"),
        ("conv  /  1", "conv_1"),
        # no leading or trailing ., _ or -
        (".hidden", "hidden"),
        ("-rf", "rf"),
        ("__init__", "init"),
        ("conv1.", "conv1"),
        ("conv1-", "conv1"),
        ("conv1/", "conv1"),
        # at most 80 characters, and no trailing ._- where the cut falls (the second strip)
        ("x" * 300, "x" * 80),
        ("x" * 79 + "-y", "x" * 79),
        ("x" * 79 + "._-y", "x" * 79),
        ("x" * 79 + "_/" + "y" * 10, "x" * 79),
        ("x" * 79 + "." + "y" * 10, "x" * 79),
        # Windows' reserved names, whatever the case and the extension, and still no trailing _
        ("CON", "CON_layer"),
        ("nul", "nul_layer"),
        ("com1", "com1_layer"),
        ("nul.png", "nul_.png"),
        ("LPT9.a.b", "LPT9_.a.b"),
        ("CON." + "a" * 90, "CON_." + "a" * 75),
        ("CONSOLE", "CONSOLE"),
        # the fallback when nothing is left
        ("", "layer"),
        ("../..", "layer"),
        ("   ", "layer"),
        ("_" * 200, "layer"),
    ],
)
def test_sanitize_keeps_each_promise_of_its_docstring(name, expected):
    clean = sanitize(name)
    assert clean == expected
    assert len(clean) <= 80 and clean[0] not in "._-" and clean[-1] not in "._-"


def test_sanitize_reserved_name_with_another_fallback():
    assert sanitize("aux", fallback="image") == "aux_image"
    assert sanitize("🚀", fallback="x") == "x"


# Names of every length around the 80-character cut, built from the characters that matter: safe
# ones, the ._- that must not end a name, and unsafe ones that become _.
_NAME_CHARS = st.sampled_from(list("ab9._-/ 层") + ["CON", "nul.", "\x00"])


@given(st.one_of(st.text(), st.lists(_NAME_CHARS, min_size=60, max_size=120).map("".join)))
@settings(max_examples=400, deadline=None)
def test_sanitize_property(name):
    clean = sanitize(name)
    assert SAFE.fullmatch(clean) and len(clean) <= 80
    assert clean[-1] not in "._-"
    assert clean.split(".")[0].upper() not in output._RESERVED
    assert sanitize(clean) == clean


# ------------------------------------------------------------------------------------ path_for


@given(stem=st.text(), subdir=st.one_of(st.none(), st.text()))
@settings(max_examples=200, deadline=None)
def test_every_path_stays_inside_the_folder(tmp_path_factory, stem, subdir):
    out = OutputDir(tmp_path_factory.mktemp("o"))
    path = out.path_for(stem, ".png", subdir)
    assert out.root.resolve() in path.resolve().parents
    assert len(path.relative_to(out.root).parts) == (2 if subdir else 1)


def test_names_that_sanitise_alike_get_distinct_files(tmp_path):
    out = OutputDir(tmp_path / "o")
    names = ["a/b", "a\\b", "a:b", "A:B", "a\x00b", "a b", "x" * 90 + "1", "x" * 90 + "2"]
    paths = [out.path_for(n, ".png") for n in names]
    assert len({str(p).lower() for p in paths}) == len(names)
    for i, path in enumerate(paths):
        out.write_bytes(path, bytes([i]))
    assert sorted(p.read_bytes() for p in paths) == [bytes([i]) for i in range(len(names))]


def test_same_stem_in_a_subfolder_and_at_the_top_do_not_collide(tmp_path):
    out = OutputDir(tmp_path)
    a = write_png(out, PIXELS, "k")
    b = write_png(out, PIXELS, "k", subdir="k_split")
    c = write_png(out, PIXELS, "k", subdir="../k_split")  # sanitises to the same subfolder
    assert len({a, b, c}) == 3 and b.parent == c.parent == tmp_path / "k_split"


# ----------------------------------------------------------------------------- atomic writes


def test_written_png_is_complete_and_has_normal_permissions(tmp_path):
    out = OutputDir(tmp_path)
    path = write_png(out, PIXELS, "k")
    assert np.array_equal(np.asarray(Image.open(path)), PIXELS)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert _temps(tmp_path) == []


class _FailingFile:
    """A file object that writes half of what it is given, then fails like a full disk."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def write(self, data):
        self.real.write(data[: len(data) // 2])
        self.real.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def test_a_write_failing_midway_leaves_neither_a_partial_file_nor_a_temp_file(tmp_path, monkeypatch):
    out = OutputDir(tmp_path)
    first = write_png(out, PIXELS, "k")
    old = first.read_bytes()
    again = OutputDir(tmp_path)
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FailingFile(real_fdopen(fd, *a, **k)))
    with pytest.raises(OnnxvisError, match="No space left.*free some disk space"):
        write_png(again, np.zeros((50, 50), np.uint8), "k")  # replacing an existing output
    with pytest.raises(OnnxvisError, match="No space left"):
        write_png(again, PIXELS, "new")  # a new file
    monkeypatch.undo()
    assert first.read_bytes() == old  # the old output is intact
    assert not (tmp_path / "new.png").exists()
    assert _temps(tmp_path) == []
    assert again.written == []


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, SystemExit, MemoryError])
def test_an_interrupted_rename_keeps_the_old_file_and_removes_the_temp_file(tmp_path, monkeypatch, interruption):
    out = OutputDir(tmp_path)
    path = out.write_bytes(out.path_for("k", ".png"), b"old")

    def interrupted(src, dst):
        raise interruption()

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(interruption):
        OutputDir(tmp_path).write_bytes(tmp_path / "k.png", b"new, but interrupted")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert _temps(tmp_path) == []


def test_encoding_failure_writes_nothing(tmp_path):
    out = OutputDir(tmp_path / "o")
    with pytest.raises(ValueError):
        write_png(out, np.zeros((3, 3), np.float64), "k")  # not uint8: refused before any write
    assert _files(tmp_path / "o") == []


def test_readers_never_see_a_partial_file(tmp_path):
    """While one thread rewrites a file over and over, another only ever reads whole versions."""
    out = OutputDir(tmp_path)
    path = out.write_bytes(out.path_for("k", ".bin"), b"a" * 200_000)
    seen: set[bytes] = set()
    stop = threading.Event()

    def read():
        while not stop.is_set():
            data = path.read_bytes()
            seen.add(bytes({*data}) + len(data).to_bytes(4, "big"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(200):
            OutputDir(tmp_path).write_bytes(path, (b"a" if i % 2 else b"b") * 200_000)
    finally:
        stop.set()
        reader.join()
    whole = {b"a" + (200_000).to_bytes(4, "big"), b"b" + (200_000).to_bytes(4, "big")}
    assert seen and seen <= whole


# ------------------------------------------------------------------- manifest and overwriting


def test_rerun_replaces_only_what_onnxvis_wrote(tmp_path):
    first = OutputDir(tmp_path)
    ours = write_png(first, PIXELS, "kernels_00_conv")
    theirs = tmp_path / "kernels_01_conv.png"
    theirs.write_bytes(b"the user's own file")
    second = OutputDir(tmp_path)
    replaced = write_png(second, PIXELS[:2], "kernels_00_conv")
    assert replaced == ours and np.asarray(Image.open(ours)).shape == (2, 4, 3)
    with pytest.raises(OnnxvisError, match=r"exists and onnxvis did not write it.*; remove it or choose another output folder"):
        write_png(second, PIXELS, "kernels_01_conv")
    assert theirs.read_bytes() == b"the user's own file"


def test_manifest_lists_every_file_and_survives_a_torn_line(tmp_path):
    for _ in range(3):
        out = OutputDir(tmp_path)
        write_png(out, PIXELS, "a")
        write_png(out, PIXELS, "b", subdir="s")
    lines = (tmp_path / MANIFEST).read_text().splitlines()
    last = {rel: [size, mtime] for rel, size, mtime in map(json.loads, lines)}  # the last line of a name wins
    assert sorted(last) == ["a.png", "s/b.png"]
    st = (tmp_path / "a.png").stat()
    assert last["a.png"] == [st.st_size, st.st_mtime_ns]
    with open(tmp_path / MANIFEST, "a") as f:
        f.write('["c.pn')  # an interrupted append
    (tmp_path / "c.png").write_bytes(b"user")
    out = OutputDir(tmp_path)
    write_png(out, PIXELS, "a")
    with pytest.raises(OnnxvisError, match="did not write it"):
        write_png(out, PIXELS, "c")


def test_an_output_the_user_changed_is_no_longer_replaced(tmp_path):
    path = write_png(OutputDir(tmp_path), PIXELS, "k")
    write_png(OutputDir(tmp_path), PIXELS[:1], "k")  # unchanged since onnxvis wrote it: replaced
    path.write_bytes(b"annotated by the user")
    with pytest.raises(OnnxvisError, match=r"did not write it \(or it was changed since\)"):
        write_png(OutputDir(tmp_path), PIXELS, "k")
    assert path.read_bytes() == b"annotated by the user"


def test_a_manifest_grown_by_many_reruns_is_compacted(tmp_path):
    for i in range(150):
        OutputDir(tmp_path).write_bytes(tmp_path / "k.png", bytes([i % 7]) * (1 + i % 2))
    assert len((tmp_path / MANIFEST).read_text().splitlines()) <= 2 + 64
    assert OutputDir(tmp_path)._owned.keys() == {"k.png"}


def test_a_junk_manifest_protects_everything(tmp_path):
    (tmp_path / "k.png").write_bytes(b"user")
    (tmp_path / MANIFEST).write_bytes(os.urandom(1000) + b"\n[1, 2]\n{}\n")
    with pytest.raises(OnnxvisError, match="did not write it"):
        write_png(OutputDir(tmp_path), PIXELS, "k")
    assert (tmp_path / "k.png").read_bytes() == b"user"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_manifest_that_is_a_fifo_or_a_link_to_a_device_does_not_hang(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "a").mkdir()
    os.symlink(fifo, tmp_path / "a" / MANIFEST)
    (tmp_path / "b").mkdir()
    os.symlink("/dev/zero", tmp_path / "b" / MANIFEST)
    (tmp_path / "c").mkdir()
    os.mkfifo(tmp_path / "c" / MANIFEST)
    for folder in "abc":
        out = OutputDir(tmp_path / folder)
        assert out._owned == {}
        with pytest.raises(OnnxvisError, match="cannot record"):
            write_png(out, PIXELS, "k")  # the manifest cannot be appended to: said, not hung


def test_an_input_is_never_overwritten_even_if_the_manifest_lists_it(tmp_path):
    first = OutputDir(tmp_path)
    image = write_png(first, PIXELS, "fmaps_00_conv")  # a previous output, now used as the input
    out = OutputDir(tmp_path, protect=[image])
    with pytest.raises(OnnxvisError, match="is one of the inputs; choose another output folder"):
        write_png(out, PIXELS[:1], "fmaps_00_conv")
    assert np.array_equal(np.asarray(Image.open(image)), PIXELS)


def test_an_input_reached_through_a_hard_link_is_protected(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"model")
    os.link(model, tmp_path / "o.png")
    out = OutputDir(tmp_path, protect=[model])
    st = (tmp_path / "o.png").stat()
    out._owned["o.png"] = (st.st_size, st.st_mtime_ns)
    with pytest.raises(OnnxvisError, match="one of the inputs"):
        out.write_bytes(tmp_path / "o.png", b"x")
    assert model.read_bytes() == b"model"


# ---------------------------------------------------------------------------- escaping the folder


def test_paths_outside_the_folder_are_refused(tmp_path):
    out = OutputDir(tmp_path / "o")
    for path in (tmp_path / "o" / ".." / "x.png", tmp_path / "x.png", tmp_path / "o" / "sub" / ".." / ".." / "y.png"):
        with pytest.raises(OnnxvisError, match="outside the output folder"):
            out.write_bytes(path, b"x")
    assert _files(tmp_path) == []


def test_a_symlink_in_the_folder_is_never_followed_out_of_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    os.symlink(victim, out_dir / "k.png")
    os.symlink(tmp_path, out_dir / "k_split")
    (out_dir / MANIFEST).write_text('["k.png", 1, 1]\n["k_split/out0000.png", 1, 1]\n')
    out = OutputDir(out_dir)
    with pytest.raises(OnnxvisError, match="outside the output folder"):
        write_png(out, PIXELS, "k")
    with pytest.raises(OnnxvisError, match="outside the output folder"):
        write_png(out, PIXELS, "out0000", subdir="k_split")
    assert victim.read_text() == "precious" and not (tmp_path / "out0000.png").exists()


def test_a_symlink_loop_or_a_folder_in_the_way_is_a_clear_error(tmp_path):
    os.symlink("k.png", tmp_path / "k.png")
    (tmp_path / "d.png").mkdir()
    out = OutputDir(tmp_path)
    out._owned.update({"k.png": (0, 0), "d.png": (0, 0)})
    with pytest.raises(OnnxvisError, match="k.png"):
        write_png(out, PIXELS, "k")
    with pytest.raises(OnnxvisError, match="is a folder"):
        write_png(out, PIXELS, "d")


# -------------------------------------------------------------------------------- the folder


def test_the_folder_is_created_with_its_parents(tmp_path):
    out = OutputDir(tmp_path / "a" / "b" / "c")
    assert out.root.is_dir() and write_png(out, PIXELS, "k").is_file()


def test_an_existing_file_is_not_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OnnxvisError, match="exists and is not a folder; give a folder$"):
        OutputDir(tmp_path / "f")
    with pytest.raises(OnnxvisError, match="cannot create output folder .*choose another$"):
        OutputDir(tmp_path / "f" / "sub")
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere (tests/test_cli_errors.py runs this case as nobody)")
def test_a_folder_that_cannot_be_written(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(OnnxvisError, match="not writable"):
        OutputDir(locked)
    with pytest.raises(OnnxvisError, match="cannot create output folder"):
        OutputDir(locked / "sub")


def test_module_save_png_is_atomic_too(tmp_path, monkeypatch):
    path = save_png(PIXELS, tmp_path / "k.png")
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_png(np.zeros((2, 2), np.uint8), path)
    monkeypatch.undo()
    assert np.array_equal(np.asarray(Image.open(path)), PIXELS) and _temps(tmp_path) == []
