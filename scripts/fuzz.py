#!/usr/bin/env python3
"""Fuzz onnxvis with mutated real models and random images; print what happened.

Every case builds one input - a real model from ../shared/assets/models mutated at the byte level
(bit flips, truncation, splices, ...) or at the protobuf level (odd dims, dtypes, attributes, op
types, external data, names, shapes), or a random image (any mode, format, size, EXIF, frames,
then maybe damaged) - and runs the real commands on it in-process through ``onnxvis.cli.main``
with ``--debug``, so that an :class:`~onnxvis.errors.OnnxvisError` (a user error) and any other
exception (a bug) can be told apart. A case fails ("crash") when:

* anything other than OnnxvisError escapes, or the process dies (a segfault in a native library);
* it runs longer than ``--timeout`` seconds ("hang");
* it needs more memory than ``--mem-mb`` (the worker's address space is capped, so an unbounded
  allocation fails as MemoryError or std::bad_alloc instead of taking the machine down);
* a file appears or changes outside the output folder, or the output folder holds a file that is
  not a complete PNG or the manifest (a half-written file, a stray temp file).

Cases run in worker processes, so a crash or a hang costs one case, not the run. Each case is
seeded from ``--seed`` and its number, so ``--only N`` replays case N alone, in this process.

    python scripts/fuzz.py                    # 10,000 cases on all CPUs
    python scripts/fuzz.py --cases 500 -j 2
    python scripts/fuzz.py --only 1234 -v     # replay one case, with its traceback

``tests/test_fuzz.py`` imports the mutators and :func:`run_case` from here and drives them with
hypothesis for a bounded number of cases in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import queue
import random
import re
import shutil
import stat
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Models the commands stay quick on. The big ones (squeezenet fp16 2.5 MB, ultraface 1.3 MB) are
# used too but less often, since every byte mutation re-reads them.
MODEL_WEIGHTS = {
    "mnist_cntk.onnx": 4,
    "mnist_cntk_int8_qdq.onnx": 3,
    "mnist_cntk_int8_qlinearconv.onnx": 3,
    "light_squeezenet_constantofshape.onnx": 3,
    "mtcnn_pnet_keras2onnx.onnx": 3,
    "cifar10_tutorial_pytorch.onnx": 3,
    "ppocr_mobile_v2.0_cls_paddle.onnx": 2,
    "ultraface_rfb320_pytorch.onnx": 1,
    "squeezenet1.0_caffe2_fp16.onnx": 1,
}
# Models that take any image quickly (small fixed input, or small dynamic input).
IMAGE_MODELS = ["mnist_cntk.onnx", "cifar10_tutorial_pytorch.onnx", "mnist_cntk_int8_qdq.onnx"]


def available_models() -> list[Path]:
    folder = ASSETS / "models"
    return [folder / name for name in MODEL_WEIGHTS if (folder / name).is_file()]


# ------------------------------------------------------------------------------------------------
# Byte-level mutations
# ------------------------------------------------------------------------------------------------

_INTERESTING = [0x00, 0x01, 0x02, 0x08, 0x0A, 0x10, 0x12, 0x1A, 0x22, 0x3A, 0x7F, 0x80, 0xFE, 0xFF]


def _offset(size: int, rng: random.Random) -> int:
    """A position, biased to the head and tail: ONNX files keep the nodes first and the graph's
    inputs and outputs last, with the weight bytes (where a flip only changes a weight) between."""
    if size <= 0:
        return 0
    where = rng.random()
    if where < 0.4:
        return rng.randrange(min(size, 8192))
    if where < 0.7:
        return max(0, size - 1 - rng.randrange(min(size, 8192)))
    return rng.randrange(size)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def mutate_bytes(data: bytes, rng: random.Random, donors: list[bytes] = ()) -> bytes:
    """Apply 1 to 8 random byte-level mutations to ``data``."""
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 5, 8])):
        kind = rng.choice(["flip", "flip", "byte", "truncate", "splice", "dup", "delete", "varint", "zeros", "insert"])
        pos = _offset(len(buf), rng)
        if kind == "flip" and buf:
            buf[pos] ^= 1 << rng.randrange(8)
        elif kind == "byte" and buf:
            buf[pos] = rng.choice(_INTERESTING) if rng.random() < 0.7 else rng.randrange(256)
        elif kind == "truncate":
            del buf[pos if rng.random() < 0.7 else rng.randrange(len(buf) + 1):]
        elif kind == "splice":
            donor = rng.choice(list(donors)) if donors and rng.random() < 0.6 else bytes(buf)
            if donor:
                start = _offset(len(donor), rng)
                chunk = donor[start : start + rng.choice([1, 4, 16, 64, 512, 4096])]
                if rng.random() < 0.5:
                    buf[pos : pos + len(chunk)] = chunk
                else:
                    buf[pos:pos] = chunk
        elif kind == "dup" and buf:
            chunk = buf[pos : pos + rng.choice([2, 8, 64, 1024])]
            buf[pos:pos] = chunk * rng.choice([1, 2, 16])
        elif kind == "delete":
            del buf[pos : pos + rng.choice([1, 2, 4, 16, 256])]
        elif kind == "varint":
            value = rng.choice([0, 1, 127, 128, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**64 - 1, rng.getrandbits(40)])
            buf[pos : pos + rng.choice([1, 2, 5])] = _varint(value)
        elif kind == "zeros":
            n = rng.choice([4, 64, 1024])
            buf[pos : pos + n] = bytes(min(n, max(0, len(buf) - pos)))
        elif kind == "insert":
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 10])))
    return bytes(buf)


# ------------------------------------------------------------------------------------------------
# Protobuf-level mutations: valid protobuf, odd ONNX
# ------------------------------------------------------------------------------------------------

_ODD_INTS = [0, 1, 2, 3, -1, -2, 7, 64, 1000, 2**16, 2**31 - 1, 2**40, -(2**40)]
_ODD_NAMES = [
    "../../../tmp/x", "/abs/path", "a\\b:c", "nul\x00byte", "ctl\x01\x1b[31m\n", "x" * 300, "层 🚀 é\u202e",
    "", ".", "..", "CON", "conv0", "Conv_0",
]
_OPS = [
    "Conv", "Conv", "ConvTranspose", "QLinearConv", "ConvInteger", "FusedConv", "NhwcConv", "Identity",
    "Cast", "DequantizeLinear", "ConstantOfShape", "Constant", "Reshape", "Add", "Relu", "Loop", "If", "NoSuchOp",
]
_ATTRS = ["group", "strides", "pads", "dilations", "kernel_shape", "auto_pad", "axis", "to", "block_size"]
_LOCATIONS = ["w.bin", "missing.bin", "../../etc/passwd", "/etc/passwd", "link.bin", "", "sub/../w.bin", "w.bin\x00x", "."]


def _weird_ints(rng: random.Random, n: int | None = None) -> list[int]:
    n = rng.choice([0, 1, 2, 3, 4, 6]) if n is None else n
    return [rng.choice(_ODD_INTS) if rng.random() < 0.5 else rng.randrange(1, 8) for _ in range(n)]


def _mut_node_attr(m, rng):
    from onnx import helper

    node = _pick_node(m, rng)
    if node is None:
        return
    name = rng.choice(_ATTRS)
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)
    if rng.random() < 0.25:
        return  # removed
    if name == "auto_pad":
        value = rng.choice([b"SAME_UPPER", b"SAME_LOWER", b"VALID", b"NOTSET", b"BOGUS"])
    elif name in ("group", "axis", "to", "block_size"):
        value = rng.choice(_ODD_INTS)
    elif rng.random() < 0.15:
        value = rng.random() * 4  # a float where ints are wanted
    else:
        value = _weird_ints(rng)
    try:
        node.attribute.append(helper.make_attribute(name, value))
    except Exception:
        pass


def _pick_node(m, rng, conv_bias: float = 0.7):
    nodes = list(m.graph.node)
    if not nodes:
        return None
    convs = [n for n in nodes if "Conv" in n.op_type]
    if convs and rng.random() < conv_bias:
        return rng.choice(convs)
    return rng.choice(nodes)


def _mut_node_op(m, rng):
    node = _pick_node(m, rng, 0.5)
    if node is not None:
        node.op_type = rng.choice(_OPS)
        if rng.random() < 0.2:
            node.domain = rng.choice(["com.microsoft", "ai.onnx", "bogus.domain", ""])


def _mut_node_io(m, rng):
    node = _pick_node(m, rng)
    if node is None:
        return
    names = [t.name for t in m.graph.initializer] + [o for n in m.graph.node for o in n.output] + ["nowhere", ""]
    kind = rng.choice(["drop", "rename", "self", "add", "drop_out"])
    if kind == "drop" and node.input:
        del node.input[rng.randrange(len(node.input))]
    elif kind == "rename" and node.input:
        node.input[rng.randrange(len(node.input))] = rng.choice(names)
    elif kind == "self" and node.input and node.output:
        node.input[rng.randrange(len(node.input))] = node.output[0]  # a cycle
    elif kind == "add":
        node.input.append(rng.choice(names))
    elif kind == "drop_out" and node.output:
        node.output[0] = rng.choice(["", node.output[0] + "_x", rng.choice(names)])


def _mut_node_name(m, rng):
    node = _pick_node(m, rng)
    if node is not None:
        odd = rng.random() < 0.8
        node.name = rng.choice(_ODD_NAMES) if odd else "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(1, 40)))


def _mut_nodes(m, rng):
    nodes = list(m.graph.node)
    if not nodes:
        return
    kind = rng.choice(["drop", "dup", "shuffle", "clear"])
    if kind == "drop":
        del m.graph.node[rng.randrange(len(nodes))]
    elif kind == "dup":
        m.graph.node.append(rng.choice(nodes))
    elif kind == "shuffle":
        rng.shuffle(nodes)
        del m.graph.node[:]
        m.graph.node.extend(nodes)
    elif kind == "clear" and rng.random() < 0.2:
        del m.graph.node[:]


def _pick_init(m, rng):
    inits = list(m.graph.initializer)
    if not inits:
        return None
    # prefer the weights of conv nodes
    wanted = {n.input[i] for n in m.graph.node if "Conv" in n.op_type for i in range(1, len(n.input))}
    weights = [t for t in inits if t.name in wanted]
    return rng.choice(weights if weights and rng.random() < 0.7 else inits)


def _mut_init_dims(m, rng):
    t = _pick_init(m, rng)
    if t is None:
        return
    dims = list(t.dims)
    kind = rng.choice(["set", "scale", "drop", "add", "huge", "zero"])
    if kind == "set" and dims:
        dims[rng.randrange(len(dims))] = rng.choice(_ODD_INTS)
    elif kind == "scale" and dims:
        i = rng.randrange(len(dims))
        dims[i] = dims[i] * rng.choice([2, 1000, 10**6])
    elif kind == "drop" and dims:
        del dims[rng.randrange(len(dims))]
    elif kind == "add":
        dims.insert(rng.randrange(len(dims) + 1), rng.choice([1, 2, 3]))
    elif kind == "huge":
        dims = [2**20, 2**20, 3, 3] if rng.random() < 0.5 else [2**31, 2**31]
    elif kind == "zero" and dims:
        dims[rng.randrange(len(dims))] = 0
    del t.dims[:]
    t.dims.extend(dims)


def _mut_init_dtype(m, rng):
    t = _pick_init(m, rng)
    if t is not None:
        t.data_type = rng.choice([0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 16, 17, 19, 21, 22, 23, 25, 99])


def _mut_init_data(m, rng):
    import numpy as np

    t = _pick_init(m, rng)
    if t is None:
        return
    kind = rng.choice(["truncate", "extend", "clear", "float_data", "nan"])
    if kind == "truncate" and t.raw_data:
        t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data))]
    elif kind == "extend":
        t.raw_data = bytes(t.raw_data) + bytes(rng.choice([1, 4, 100]))
    elif kind == "clear":
        t.ClearField("raw_data")
    elif kind == "float_data":
        t.ClearField("raw_data")
        t.float_data.extend([rng.random() for _ in range(rng.choice([0, 1, 5, 108]))])
    elif kind == "nan" and t.raw_data and t.data_type == 1:
        values = np.frombuffer(t.raw_data, np.float32).copy()
        values[: max(1, values.size // 2)] = rng.choice([np.nan, np.inf, -np.inf, 3e38])
        t.raw_data = values.tobytes()


def _mut_init_external(m, rng):
    from onnx import TensorProto

    t = _pick_init(m, rng)
    if t is None:
        return
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL if rng.random() < 0.9 else rng.choice([0, 1])
    del t.external_data[:]
    entries = [("location", rng.choice(_LOCATIONS))]
    if rng.random() < 0.5:
        entries.append(("offset", str(rng.choice([0, 4, 4096, 10**12, -1]))))
    if rng.random() < 0.5:
        entries.append(("length", str(rng.choice([0, 4, 432, 10**12, -5]) if rng.random() < 0.9 else "abc")))
    if rng.random() < 0.1:
        entries.append(("checksum", "bogus"))
    for key, value in entries:
        e = t.external_data.add()
        e.key, e.value = key, value


def _mut_graph_io(m, rng):
    values = list(m.graph.input) + list(m.graph.output)
    if not values:
        return
    v = rng.choice(values)
    kind = rng.choice(["dim", "rank", "elem", "noshape", "name"])
    tt = v.type.tensor_type
    if kind == "dim" and tt.shape.dim:
        d = tt.shape.dim[rng.randrange(len(tt.shape.dim))]
        if rng.random() < 0.2:
            d.dim_param = "N"
        else:
            d.dim_value = rng.choice([0, 1, 3, 4, 5, 100, 5000, 10**5, 2**40, -3])
    elif kind == "rank":
        if tt.shape.dim and rng.random() < 0.5:
            del tt.shape.dim[rng.randrange(len(tt.shape.dim))]
        else:
            tt.shape.dim.add().dim_value = rng.choice([1, 3])
    elif kind == "elem":
        tt.elem_type = rng.choice([0, 1, 2, 3, 6, 7, 9, 10, 11, 16, 99])
    elif kind == "noshape":
        tt.ClearField("shape")
    elif kind == "name":
        v.name = rng.choice(_ODD_NAMES)


def _mut_opset(m, rng):
    if rng.random() < 0.3:
        m.ir_version = rng.choice([0, 1, 3, 7, 8, 10, 11, 99])
    elif m.opset_import:
        m.opset_import[rng.randrange(len(m.opset_import))].version = rng.choice([0, 1, 6, 9, 11, 13, 17, 21, 23, 99])
    else:
        op = m.opset_import.add()
        op.version = 13


def _mut_metadata(m, rng):
    entry = m.metadata_props.add()
    entry.key = "onnxvis.preprocess"
    entry.value = rng.choice([
        "{", "[]", "null", '{"resize": [0, 0]}', '{"resize": [100000, 100000]}', '{"mean": "x"}',
        '{"std": [0, 0, 0]}', '{"resize": [-5], "crop": [3]}', '{"color": "CMYK"}', '{"scale": 1e309}',
        '{"resize": [28, 28], "crop": null, "mean": [0], "std": [1], "color": "L", "scale": 255}',
        '{"resize": [20000, 20000]}',
    ])


def _mut_constant_weight(m, rng):
    """Replace a conv weight initializer by a Constant or ConstantOfShape node of odd values."""
    import numpy as np
    from onnx import helper, numpy_helper

    convs = [n for n in m.graph.node if n.op_type == "Conv" and len(n.input) > 1]
    if not convs:
        return
    node = rng.choice(convs)
    name = node.input[1] + "_fuzz"
    if rng.random() < 0.5:
        dims = [rng.choice([1, 2, 8, 2**14, 2**20]) for _ in range(rng.choice([1, 3, 4, 5]))]
        shape = numpy_helper.from_array(np.array(dims, np.int64), name + "_shape")
        m.graph.initializer.append(shape)
        maker = helper.make_node("ConstantOfShape", [shape.name], [name], value=numpy_helper.from_array(np.array([0.5], np.float32)))
    else:
        t = numpy_helper.from_array(np.ones([rng.choice([1, 2, 4])] * rng.choice([1, 3, 4]), np.float32), name + "_value")
        if rng.random() < 0.5:
            del t.dims[:]
            t.dims.extend([2**16, 2**16, 3, 3])
        maker = helper.make_node("Constant", [], [name], value=t)
    m.graph.node.insert(0, maker)
    node.input[1] = name


STRUCTURE_MUTATORS = [
    _mut_node_attr, _mut_node_attr, _mut_node_op, _mut_node_io, _mut_node_name, _mut_nodes,
    _mut_init_dims, _mut_init_dims, _mut_init_dtype, _mut_init_data, _mut_init_external,
    _mut_graph_io, _mut_graph_io, _mut_opset, _mut_metadata, _mut_constant_weight,
]


def mutate_structure(data: bytes, rng: random.Random) -> bytes:
    """Parse ``data`` as an ONNX model, apply 1 to 3 protobuf-level mutations, serialize it."""
    import onnx

    model = onnx.ModelProto.FromString(data)
    for _ in range(rng.choice([1, 1, 2, 3])):
        rng.choice(STRUCTURE_MUTATORS)(model, rng)
    return model.SerializeToString()


def mutate_model(data: bytes, rng: random.Random, donors: list[bytes] = ()) -> bytes:
    """A mutated model: protobuf-level, byte-level, or both."""
    kind = rng.random()
    if kind < 0.5:
        return mutate_structure(data, rng)
    if kind < 0.6:
        return mutate_bytes(mutate_structure(data, rng), rng, donors)
    return mutate_bytes(data, rng, donors)


# ------------------------------------------------------------------------------------------------
# Random images
# ------------------------------------------------------------------------------------------------

_FORMATS = {  # format -> modes it can store
    "PNG": ["RGB", "L", "RGBA", "P", "I;16", "1", "LA", "I"],
    "JPEG": ["RGB", "L", "CMYK"],
    "GIF": ["P", "L", "RGB"],
    "BMP": ["RGB", "L", "P", "1"],
    "TIFF": ["RGB", "L", "RGBA", "CMYK", "F", "I;16", "I", "1", "P", "LA", "YCbCr"],
    "WEBP": ["RGB", "RGBA"],
    "PPM": ["RGB", "L"],
}


def _png_bomb(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def random_image(rng: random.Random) -> bytes:
    """Encoded bytes of a random image: any mode, format, size, EXIF orientation, frames; maybe damaged."""
    import numpy as np
    from PIL import Image

    if rng.random() < 0.03:
        return _png_bomb(rng.choice([40000, 65535, 2**31 - 1]), rng.choice([40000, 1, 2**31 - 1]))
    fmt = rng.choice(list(_FORMATS))
    mode = rng.choice(_FORMATS[fmt])
    size = rng.choice([(1, 1), (1, 50), (50, 1), (2, 3)]) if rng.random() < 0.2 else (rng.randrange(1, 300), rng.randrange(1, 300))
    npr = np.random.default_rng(rng.getrandbits(32))
    base = Image.fromarray(npr.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    if mode == "P":
        img = base.quantize(rng.choice([2, 16, 256]))
    elif mode == "I;16":
        img = Image.fromarray(npr.integers(0, 65536, (size[1], size[0]), dtype=np.uint16))
    elif mode == "I":
        img = Image.fromarray(npr.integers(-(2**20), 2**20, (size[1], size[0]), dtype=np.int32))
    elif mode == "F":
        img = Image.fromarray((npr.standard_normal((size[1], size[0])) * rng.choice([1, 1000, 1e30])).astype(np.float32))
    else:
        img = base.convert(mode)
    options: dict = {}
    if rng.random() < 0.3 and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        exif = Image.Exif()
        exif[0x0112] = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 65535])
        options["exif"] = exif.tobytes()
    if fmt == "GIF" and rng.random() < 0.5:
        frames = [base.convert("P"), Image.new("RGB", size, (255, 0, 0)).convert("P")]
        img, options = frames[0], {"save_all": True, "append_images": frames[1:], "duration": 100, "loop": 0}
    buffer = io.BytesIO()
    try:
        img.save(buffer, format=fmt, **options)
    except Exception:
        buffer = io.BytesIO()
        base.save(buffer, format="PNG")
    data = buffer.getvalue()
    if rng.random() < 0.35:
        data = mutate_bytes(data, rng)
    return data


# ------------------------------------------------------------------------------------------------
# Running one case
# ------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one case did: kind "ok", "user error" or "crash"; ``label`` says which (message kind)."""

    kind: str
    label: str = ""
    detail: str = ""
    commands: list = field(default_factory=list)


def message_kind(message: str) -> str:
    """A short, stable bucket for an error message: no paths, numbers or quoted names."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "Q", message)
    text = re.sub(r"(/[^\s;:,()]+)+", "P", text)
    text = re.sub(r"\b[\w.-]+\.(onnx|png|jpg|bin|img)\b", "P", text)
    text = re.sub(r"\d+", "N", text)
    text = re.split(r"[;(:]", text, maxsplit=1)[0]
    return " ".join(text.split())[:70]


def _snapshot(folder: Path, skip: Path) -> dict[str, tuple]:
    """Every entry below ``folder`` except ``skip`` (and its content): path -> (mode, size, mtime)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        if here == skip:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = here / name
            if path == skip:
                continue
            st = path.lstat()
            # a folder's size and mtime change when the output folder is made in it: not a write
            out[str(path.relative_to(folder))] = (st.st_mode,) if stat.S_ISDIR(st.st_mode) else (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def check_output_folder(out: Path) -> str | None:
    """None when ``out`` holds only complete PNGs and onnxvis's manifest; else what is wrong."""
    from PIL import Image

    from onnxvis.outdir import MANIFEST

    if not out.exists():
        return None
    for path in out.rglob("*"):
        if path.is_dir():
            continue
        if path.name == MANIFEST:
            try:
                names = [json.loads(line)[0] for line in path.read_text().splitlines()]
            except ValueError as exc:
                return f"manifest line is not JSON: {exc}"
            missing = [n for n in names if not (out / n).is_file()]
            if missing:
                return f"manifest lists files that are not there: {missing[:3]}"
            continue
        if path.suffix != ".png" or path.is_symlink():
            return f"unexpected file in the output folder: {path.relative_to(out)}"
        try:
            with _no_bomb_limit(), Image.open(path) as img:
                if img.format != "PNG":
                    return f"{path.relative_to(out)} is not a PNG"
                if img.width * img.height > 40_000_000:
                    img.verify()  # every chunk's CRC, up to IEND, without decoding the pixels
                else:
                    img.load()
        except Exception as exc:
            return f"{path.relative_to(out)} is not a complete PNG: {exc}"
    return None


@contextlib.contextmanager
def _no_bomb_limit():
    """Let PIL open a picture onnxvis wrote, however large (to check it, not to decode it)."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def run_cli(argv: list[str]) -> tuple[str, str, str]:
    """Run ``onnxvis --debug ARGV`` in-process; returns (kind, label, detail).

    stderr is captured at the Python level and at the file-descriptor level (native libraries such
    as onnxruntime write there directly): a user error must come with nothing else on stderr, so
    that without --debug the user sees exactly one line.
    """
    from onnxvis.cli import main
    from onnxvis.errors import OnnxvisError

    stdout, stderr = io.StringIO(), io.StringIO()
    native = tempfile.TemporaryFile()
    saved = os.dup(2)
    os.dup2(native.fileno(), 2)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["--debug", *argv])
    except OnnxvisError as exc:
        message = str(exc)
        if not message.strip():
            return "crash", "OnnxvisError with an empty message", ""
        extra = stderr.getvalue() + _drain(native, saved)
        if extra.strip():
            return "crash", "more than one line on stderr for a user error", f"{extra.strip()[:1500]}\nthen: {message}"
        return "user error", message_kind(message), message
    except SystemExit as exc:  # argparse
        code = exc.code
        if code == 2:
            return "user error", "usage: " + message_kind(stderr.getvalue()), stderr.getvalue()
    except MemoryError:
        return "crash", "MemoryError (memory use not bounded)", traceback.format_exc()
    except Exception as exc:
        tb = traceback.extract_tb(exc.__traceback__)
        where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb) if "/onnxvis/" in f.filename), "?")
        return "crash", f"{type(exc).__name__} at {where}", traceback.format_exc()
    finally:
        _drain(native, saved)
    if code != 0:
        return "crash", f"exit code {code}", stderr.getvalue()
    return "ok", "", ""


def _drain(native, saved: int) -> str:
    """Put fd 2 back (once) and return what native code wrote to it meanwhile."""
    if not native.closed:
        os.dup2(saved, 2)
        os.close(saved)
        native.seek(0)
        text = native.read().decode("utf-8", "replace")
        native.close()
        return text
    return ""


def run_case(workdir: Path, model: bytes | None, image: bytes | None, commands: list[list[str]],
             model_path: Path | None = None, image_path: Path | None = None, watch: Path | None = None) -> Outcome:
    """Write the inputs into ``workdir``, run each command, and check the folders afterwards.

    In ``commands``, ``{model}``, ``{image}`` and ``{out}`` are replaced by the input paths and the
    output folder. Given ``model_path`` / ``image_path`` (existing files) are used instead of bytes.
    Nothing below ``watch`` (default: ``workdir``) but the output folder may change.
    """
    watch = workdir if watch is None else watch
    inputs = workdir / "in"
    inputs.mkdir(parents=True, exist_ok=True)
    out = workdir / "out"
    if model is not None:
        model_path = inputs / "model.onnx"
        model_path.write_bytes(model)
        # data files for the external-data mutations: one beside the model, one outside behind a link
        (inputs / "w.bin").write_bytes(bytes(range(256)) * 64)
        (workdir / "secret.bin").write_bytes(bytes(4096))
        if not os.path.lexists(inputs / "link.bin"):
            os.symlink(workdir / "secret.bin", inputs / "link.bin")
    if image is not None:
        image_path = inputs / "image.img"
        image_path.write_bytes(image)
    before = _snapshot(watch, out)
    cwd = os.getcwd()
    os.chdir(inputs)
    outcome = Outcome("ok")
    try:
        for template in commands:
            argv = [a.format(model=model_path, image=image_path, out=out) for a in template]
            kind, label, detail = run_cli(argv)
            outcome.commands.append((argv[0], kind, label))
            if kind == "crash":
                return Outcome("crash", f"{argv[0]}: {label}", detail, outcome.commands)
            if kind == "user error" and outcome.kind == "ok":
                outcome = Outcome("user error", label, detail, outcome.commands)
    finally:
        os.chdir(cwd)
    after = _snapshot(watch, out)
    if after != before:
        changed = sorted(set(after.items()) ^ set(before.items()))
        return Outcome("crash", "wrote outside the output folder", str(changed[:5]), outcome.commands)
    problem = check_output_folder(out)
    if problem:
        return Outcome("crash", "bad output folder", problem, outcome.commands)
    return outcome


def model_commands(rng: random.Random, image: Path | None, split: bool = True) -> list[list[str]]:
    """The commands a mutated model goes through (``split``: sometimes ``kernels --split`` too)."""
    spec = rng.choice(["0", "0,1", "-1", "all", "0,2,5", "1"])
    commands = [["info", "{model}"], ["kernels", "{model}", "--layers", spec, "-o", "{out}"]]
    if rng.random() < 0.5:
        commands.append(["layers", "{model}"])
    if image is not None and rng.random() < 0.6:
        commands.append(["fmaps", "{model}", str(image), "-o", "{out}"])
    if split and rng.random() < 0.1:
        commands.append(["kernels", "{model}", "--split", "--layers", "0", "-o", "{out}"])
    return commands


# ------------------------------------------------------------------------------------------------
# The long run: cases in worker processes
# ------------------------------------------------------------------------------------------------


class Fuzzer:
    """The inputs of a run (read once per process)."""

    def __init__(self):
        self.models = {p.name: p.read_bytes() for p in available_models()}
        if not self.models:
            raise SystemExit(f"fuzz: no models in {ASSETS / 'models'}")
        self.names = sorted(self.models)
        self.weights = [MODEL_WEIGHTS[n] for n in self.names]
        photo = ASSETS / "images" / "skimage_chelsea.png"
        self.photo = photo if photo.is_file() else None

    def case(self, seed: int, index: int, workdir: Path) -> Outcome:
        rng = random.Random(f"{seed}:{index}")
        if rng.random() < 0.7:
            name = rng.choices(self.names, self.weights)[0]
            donors = [self.models[n] for n in rng.sample(self.names, min(2, len(self.names)))]
            data = mutate_model(self.models[name], rng, donors)
            return run_case(workdir, data, None, model_commands(rng, self.photo))
        name = rng.choice([n for n in IMAGE_MODELS if n in self.models] or self.names)
        image = random_image(rng)
        return run_case(workdir, None, image, [["fmaps", str(ASSETS / "models" / name), "{image}", "-o", "{out}"]])


def _limit_memory(mem_mb: int) -> None:
    import resource

    if mem_mb > 0:
        limit = mem_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _worker(seed: int, tasks, results, heartbeat, slot: int, mem_mb: int) -> None:
    import warnings

    warnings.simplefilter("ignore")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _limit_memory(mem_mb)
    fuzzer = Fuzzer()
    base = Path(tempfile.mkdtemp(prefix="onnxvis-fuzz-"))
    try:
        while True:
            index = tasks.get()
            if index is None:
                return
            heartbeat[2 * slot] = index
            heartbeat[2 * slot + 1] = time.monotonic()
            workdir = base / str(index)
            start = time.perf_counter()
            try:
                outcome = fuzzer.case(seed, index, workdir)
            except MemoryError:
                outcome = Outcome("crash", "MemoryError (memory use not bounded)", traceback.format_exc())
            except Exception as exc:  # in the harness itself, or a mutator
                outcome = Outcome("crash", f"harness: {type(exc).__name__}", traceback.format_exc())
            shutil.rmtree(workdir, ignore_errors=True)
            results.put((index, outcome.kind, outcome.label, outcome.detail[-3000:], time.perf_counter() - start))
            heartbeat[2 * slot + 1] = 0.0
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_many(cases: int, seed: int, workers: int, timeout: float, mem_mb: int, verbose: bool) -> int:
    ctx = mp.get_context("spawn")
    tasks = ctx.Queue()
    results = ctx.Queue()
    heartbeat = ctx.Array("d", 2 * workers, lock=False)
    for i in range(cases):
        tasks.put(i)
    procs: list = [None] * workers

    def start(slot: int):
        heartbeat[2 * slot + 1] = 0.0
        p = ctx.Process(target=_worker, args=(seed, tasks, results, heartbeat, slot, mem_mb), daemon=True)
        p.start()
        procs[slot] = p

    for slot in range(workers):
        start(slot)
    counts: Counter = Counter()
    labels: dict[str, Counter] = {"user error": Counter(), "crash": Counter()}
    crashes: list = []
    done = 0
    t0 = time.perf_counter()
    case_time = 0.0
    slowest = (0.0, -1)
    last_report = t0

    def record(index, kind, label, detail, seconds):
        nonlocal done, case_time, slowest
        done += 1
        counts[kind] += 1
        case_time += seconds
        slowest = max(slowest, (seconds, index))
        if kind in labels:
            labels[kind][label] += 1
        if kind == "crash":
            crashes.append((index, label, detail))
            if verbose:
                print(f"case {index}: CRASH {label}\n{detail}", file=sys.stderr)

    while done < cases:
        try:
            record(*results.get(timeout=0.5))
        except queue.Empty:
            pass
        now = time.monotonic()
        for slot, p in enumerate(procs):
            busy_since = heartbeat[2 * slot + 1]
            index = int(heartbeat[2 * slot])
            if busy_since and now - busy_since > timeout:
                p.kill()
                p.join()
                record(index, "crash", f"hang (over {timeout:g} s)", "", now - busy_since)
                start(slot)
            elif not p.is_alive() and done < cases:
                if busy_since:  # died inside a case: a native crash
                    record(index, "crash", f"process died (exit code {p.exitcode})", "", 0.0)
                start(slot)
        if time.perf_counter() - last_report > 30:
            last_report = time.perf_counter()
            print(f"  ... {done}/{cases} cases, {counts['crash']} crashes, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    for _ in procs:
        tasks.put(None)
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
    wall = time.perf_counter() - t0

    print(f"onnxvis fuzz: seed {seed}, {workers} workers, timeout {timeout:g} s, memory cap {mem_mb} MB")
    print(f"cases        {done}")
    print(f"ok           {counts['ok']}")
    print(f"user errors  {counts['user error']} (exit 2, one-line message), by kind:")
    for label, n in labels["user error"].most_common():
        print(f"  {n:6d}  {label}")
    print(f"crashes      {counts['crash']}")
    for label, n in labels["crash"].most_common():
        print(f"  {n:6d}  {label}")
    print(f"time         {wall:.0f} s wall, {case_time / max(done, 1) * 1000:.0f} ms per case on average, "
          f"slowest case {slowest[1]} ({slowest[0]:.1f} s)")
    for index, label, detail in crashes[:20]:
        print(f"\n--- case {index}: {label} (replay: python scripts/fuzz.py --seed {seed} --only {index} -v)")
        if detail:
            print(detail.rstrip()[-1500:])
    return 1 if counts["crash"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="number of cases (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    parser.add_argument("-j", "--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all CPUs)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as a hang (default 60)")
    parser.add_argument("--mem-mb", type=int, default=6144, help="address-space cap per worker in MB, 0 for none (default 6144)")
    parser.add_argument("--only", type=int, help="replay one case in this process and print its outcome")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each crash's traceback as it happens")
    args = parser.parse_args(argv)
    if args.only is not None:
        _limit_memory(args.mem_mb)
        with tempfile.TemporaryDirectory(prefix="onnxvis-fuzz-") as tmp:
            outcome = Fuzzer().case(args.seed, args.only, Path(tmp) / "case")
        print(f"case {args.only}: {outcome.kind} {outcome.label}")
        for command in outcome.commands:
            print("  ", *command)
        if args.verbose and outcome.detail:
            print(outcome.detail)
        return 1 if outcome.kind == "crash" else 0
    return run_many(args.cases, args.seed, max(1, args.workers), args.timeout, args.mem_mb, args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
