"""Open an ONNX file: its structure without weight bytes, and one tensor decoded on demand.

Callers ask :class:`Model` for the graph structure and for named tensors; they never see how the
bytes are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    import onnx


class Model:
    """An opened ONNX model.

    Attributes:
        path: the model file.
        name: the file name without its suffix, used for the default output folder.
        proto: the model's structure. Top-level initializers keep name, dims and data_type, but their
            data may be absent: use :meth:`tensor` or :meth:`initializer_proto` to read it.
    """

    def __init__(self, path: Path, proto: "onnx.ModelProto", initializers: dict[str, "onnx.TensorProto"]):
        self.path = path
        self.name = path.name[: -len(".onnx")] if path.name.endswith(".onnx") else path.stem
        self.proto = proto
        self._initializers = initializers

    @classmethod
    def open(cls, path: str | Path) -> "Model":
        """Open ``path``; raise :class:`OnnxvisError` when it is not a readable ONNX model."""
        import onnx

        path = Path(path)
        if not path.exists():
            raise OnnxvisError(f"model file not found: {path}; check the path")
        if path.is_dir():
            raise OnnxvisError(f"{path} is a directory; give the path of a .onnx file")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf raises several types for garbage input
            raise OnnxvisError(f"{path} is not a readable ONNX model ({type(exc).__name__}); check the file") from None
        if not proto.HasField("graph") or not proto.graph.node:
            raise OnnxvisError(f"{path} holds no ONNX graph; check that it is an ONNX model")
        inits = {t.name: t for t in proto.graph.initializer}
        return cls(path, proto, inits)

    @property
    def graph(self) -> "onnx.GraphProto":
        return self.proto.graph

    @property
    def metadata(self) -> dict[str, str]:
        return {p.key: p.value for p in self.proto.metadata_props}

    @property
    def opsets(self) -> dict[str, int]:
        return {(o.domain or "ai.onnx"): o.version for o in self.proto.opset_import}

    def has_initializer(self, name: str) -> bool:
        return name in self._initializers

    def initializer_proto(self, name: str) -> "onnx.TensorProto":
        """The full TensorProto of a top-level initializer, with its data loaded."""
        import onnx
        from onnx import external_data_helper

        tensor = self._initializers[name]
        if external_data_helper.uses_external_data(tensor):
            full = onnx.TensorProto()
            full.CopyFrom(tensor)
            try:
                external_data_helper.load_external_data_for_tensor(full, str(self.path.parent))
            except Exception as exc:
                raise OnnxvisError(
                    f"cannot read external data of tensor {name!r} of {self.path}: {exc}; "
                    "keep the model's data file beside it, inside the model's folder"
                ) from None
            return full
        return tensor

    def tensor(self, name: str) -> np.ndarray:
        """Decode a top-level initializer to numpy, keeping its dtype."""
        from onnx import numpy_helper

        return numpy_helper.to_array(self.initializer_proto(name))
