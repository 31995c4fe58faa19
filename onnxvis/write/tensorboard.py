"""Write pictures and histograms to a TensorBoard event file, without torch or TensorFlow.

An event file is a TFRecord file of ``Event`` protocol buffers. The messages come from the
tensorboard package's own protos (``tensorboard.compat.proto``), so the file is what TensorBoard
itself reads; the record framing (length, masked CRC32C of the length, data, masked CRC32C of the
data) is a few lines here. The CRC uses ``google-crc32c`` (a C library) when it is installed, as the
``tensorboard`` extra does, and TensorBoard's pure-Python CRC otherwise.

The file is built in memory and written once through :class:`~onnxvis.outdir.OutputDir`, so it is
atomic and inside the output folder like every other file onnxvis writes. Its name contains
``tfevents``, which is how TensorBoard finds event files in a ``--logdir``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from onnxvis.errors import OnnxvisError

if TYPE_CHECKING:
    from onnxvis.analysis.stats import Histogram
    from onnxvis.outdir import OutputDir

INSTALL_HINT = "pip install 'onnxvis[tensorboard]'"
FILE_VERSION = "brain.Event:2"
_MASK_DELTA = 0xA282EAD8


def _protos():
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
    except ImportError:
        raise OnnxvisError(
            f"the tensorboard format needs the tensorboard package; install it with: {INSTALL_HINT}", setting="formats"
        ) from None
    return event_pb2, summary_pb2


def check_available() -> None:
    """Raise OnnxvisError, with the install command, when the tensorboard package is missing."""
    _protos()


def _crc32c_function() -> Callable[[bytes], int]:
    try:
        import google_crc32c

        return google_crc32c.value
    except ImportError:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c

        return crc32c


def masked_crc32c(data: bytes, crc32c: Callable[[bytes], int] | None = None) -> int:
    """TFRecord's masked CRC32C of ``data``: the CRC rotated right by 15 bits plus a constant."""
    crc = (crc32c or _crc32c_function())(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def tfrecord(data: bytes, crc32c: Callable[[bytes], int] | None = None) -> bytes:
    """One TFRecord: uint64 length, masked CRC of the length, the data, masked CRC of the data."""
    crc32c = crc32c or _crc32c_function()
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header, crc32c)) + data + struct.pack("<I", masked_crc32c(data, crc32c))


class EventFile:
    """Image and histogram summaries collected in memory, then saved as one TensorBoard event file.

    Raises:
        OnnxvisError: the tensorboard package is not installed (when the object is made, before any work).
    """

    def __init__(self) -> None:
        self._event_pb2, self._summary_pb2 = _protos()
        self._crc32c = _crc32c_function()
        self._records: list[bytes] = []
        self.images = 0
        self.histograms = 0
        self.scalars = 0
        self._add(self._event_pb2.Event(wall_time=time.time(), file_version=FILE_VERSION))

    def _add(self, event) -> None:
        self._records.append(tfrecord(event.SerializeToString(), self._crc32c))

    def add_png(self, tag: str, png: bytes, height: int, width: int, channels: int, step: int = 0) -> None:
        """Add one image, already encoded as PNG, under ``tag`` at ``step``.

        Args:
            tag: the name TensorBoard shows, e.g. "kernels/00_conv1".
            png: the PNG file's bytes.
            height, width: its size in pixels.
            channels: 1 for grey, 3 for RGB (TensorBoard's colorspace).
            step: the step slider's value; the per-output-channel view uses the channel index.
        """
        summary = self._summary_pb2
        image = summary.Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png)
        value = summary.Summary.Value(tag=tag, image=image)
        self._add(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary.Summary(value=[value])))
        self.images += 1

    def add_histogram(self, tag: str, histogram: "Histogram", step: int = 0) -> None:
        """Add one histogram under ``tag`` at ``step``, as ``SummaryWriter.add_histogram`` stores it.

        Args:
            tag: the name TensorBoard shows, e.g. "weights/00_conv1".
            histogram: made by :func:`onnxvis.analysis.stats.histogram` (or a running one), which
                buckets values as add_histogram does.
        """
        summary = self._summary_pb2
        proto = summary.HistogramProto(
            min=histogram.min, max=histogram.max, num=histogram.num, sum=histogram.sum,
            sum_squares=histogram.sum_squares, bucket_limit=list(histogram.bucket_limit), bucket=list(histogram.bucket),
        )
        value = summary.Summary.Value(tag=tag, histo=proto)
        self._add(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary.Summary(value=[value])))
        self.histograms += 1

    def add_scalar(self, tag: str, value: float, step: int = 0) -> None:
        """Add one number under ``tag`` at ``step`` (TensorBoard's Scalars tab draws a tag's steps as a line)."""
        summary = self._summary_pb2
        item = summary.Summary.Value(tag=tag, simple_value=float(value))
        self._add(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary.Summary(value=[item])))
        self.scalars += 1

    def to_bytes(self) -> bytes:
        return b"".join(self._records)

    def save(self, out: "OutputDir", name: str) -> Path:
        """Write the file as ``events.out.tfevents.<name>`` in the output folder, atomically.

        The name is fixed for a given ``name``, so running the same command again replaces the file
        instead of adding a second copy of every image to the TensorBoard run.
        """
        return out.write_bytes(out.path_for(f"events.out.tfevents.{name}", ".onnxvis"), self.to_bytes())
