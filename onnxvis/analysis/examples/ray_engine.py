"""The Ray Data engine of ``onnxvis examples``: the same scoring, spread over a Ray cluster's actors.

The image paths become a Ray dataset (``ray.data.from_items``); ``map_batches`` hands blocks of
them to a pool of actors (``compute=ray.data.ActorPoolStrategy(size=N)``), each of which opens one
:class:`~onnxvis.engine.inspector.Inspector` from the run's pickled
:class:`~onnxvis.engine.config.InspectorConfig` (one onnxruntime session, its intra-op threads set to
the actor's CPUs) and runs :func:`onnxvis.analysis.examples.run.score_images` on its block: the same decoding,
preprocessing and arithmetic as the local engine. Each block returns its partial top-K, which this
process merges into the global one as blocks finish; since the merge is associative and ties break
by image id, the result equals the local engine's, channel for channel.

Ray is an optional extra (``pip install 'onnxvis[ray]'``), imported only here.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from onnxvis.analysis.examples.run import Engine, Partial, Plan, score_images
from onnxvis.analysis.examples.topk import TopK
from onnxvis.engine.inspector import Inspector
from onnxvis.errors import OnnxvisError, one_line

__all__ = ["check_available", "ray_engine"]

# Images per map_batches call: enough to fill the Inspector's batches several times over.
_BLOCK_IMAGES = 64
# An actor reserves a bit less than its CPUs, so that Ray's own small tasks (block splitting,
# the driver's reads) still find room on a machine whose every CPU belongs to an actor.
_RESERVE = 0.9


def check_available() -> None:
    """Raise a clear error when Ray Data is not installed."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise OnnxvisError("the Ray engine needs Ray Data; install it with: pip install 'onnxvis[ray]'", setting="engine") from None


_ERROR = b"error:"  # a blob that carries a worker's OnnxvisError instead of a result (npz starts with PK)


def _error_blob(exc: OnnxvisError) -> bytes:
    """A worker's error as bytes: its setting (so that the CLI still names the flag), a newline, its message."""
    return _ERROR + (exc.setting or "").encode("utf-8") + b"\n" + str(exc).encode("utf-8", "replace")


def _pack(partial: Partial) -> bytes:
    buffer = io.BytesIO()
    unreadable = np.array(partial.unreadable, dtype=str) if partial.unreadable else np.zeros(0, dtype=str)
    arrays = partial.top.to_arrays()
    arrays.update(ids=np.asarray(partial.ids, np.int64), unreadable=unreadable)
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds too narrowly
    return buffer.getvalue()


def _unpack(blob: bytes) -> Partial:
    if blob.startswith(_ERROR):
        setting, _, message = blob[len(_ERROR):].partition(b"\n")
        raise OnnxvisError(message.decode("utf-8", "replace"), setting=setting.decode("utf-8") or None)
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return Partial(TopK.from_arrays(arrays), arrays["ids"].tolist(), [str(m) for m in arrays["unreadable"].tolist()])


class _Scorer:
    """One actor: one Inspector, opened once from the plan's config, scoring the blocks Ray hands it."""

    def __init__(self, plan: Plan, threads: int):
        self.plan = plan
        self.inspector: Inspector = plan.inspector(threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        todo = [(int(i), str(p)) for i, p in zip(batch["id"], batch["path"], strict=True)]
        try:
            blobs = [_pack(partial) for partial in score_images(self.inspector, self.plan, todo, chunk=len(todo) or 1)]
        except OnnxvisError as exc:  # Ray would wrap it beyond recognition: carry the message home
            blobs = [_error_blob(exc)]
        return {"blob": np.array(blobs, dtype=object)}


def _connect(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    # Ray's C++ core logs at start-up; onnxvis's stderr is for the user's errors and its progress bar.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        if address:
            # The cluster's workers get this very onnxvis package (Ray uploads it): the same code as
            # here, hence the same numbers. Its dependencies (numpy, onnxruntime, Pillow) must be
            # installed on every node.
            package = os.path.dirname(os.path.abspath(__file__))
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, runtime_env={"py_modules": [package]})
        else:
            # "local": a new instance on this machine, even when a `ray start` cluster runs here too
            ray.init(address="local", logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        hint = "check the cluster's address or run 'ray start --head'"
        if address:  # Ray 2.59+ starts clusters with token authentication; the error does not always say so
            hint += (
                "; a cluster with token authentication also needs RAY_AUTH_MODE=token here "
                "(the token in ~/.ray/auth_token or RAY_AUTH_TOKEN)"
            )
        raise OnnxvisError(f"cannot start or join {where} ({one_line(str(exc))[:200]}); {hint}", setting="ray_address") from None


def ray_engine(address: str | None = None, workers: int | None = None, cpus_per_worker: int = 1) -> Engine:
    """An engine for :func:`onnxvis.analysis.examples.find.find_examples` that scores images on Ray Data.

    Args:
        address: a Ray cluster to join ("auto", "ray://host:10001", "host:6379"); None starts
            Ray on this machine (or uses the one this process already started).
        workers: actors in the pool; default: the cluster's CPUs / ``cpus_per_worker``.
        cpus_per_worker: CPUs (and onnxruntime threads) of each actor.

    Every worker must see the model file and the images at the same paths as this machine (a
    shared file system), and have onnxvis installed.
    """
    check_available()
    if workers is not None and workers < 1:
        raise OnnxvisError(f"the number of Ray workers must be 1 or more, got {workers}")
    if cpus_per_worker < 1:
        raise OnnxvisError(f"the CPUs per Ray worker must be 1 or more, got {cpus_per_worker}")

    def run(plan: Plan, todo: list[tuple[int, str]]) -> Iterator[Partial]:
        import ray

        if not todo:
            return
        _connect(address)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # onnxvis draws its own
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        cpus = float(ray.cluster_resources().get("CPU", 1))
        size = workers or max(1, int(cpus // cpus_per_worker))
        shared = dataclasses.replace(plan, model=os.path.abspath(plan.model))
        items = [{"id": i, "path": os.path.abspath(p)} for i, p in todo]
        blocks = max(1, min(len(items) // _BLOCK_IMAGES + 1, 4 * size * 8))
        dataset = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            _Scorer,
            fn_constructor_kwargs={"plan": shared, "threads": cpus_per_worker},
            batch_size=_BLOCK_IMAGES,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=_RESERVE * cpus_per_worker,
        )
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for blob in batch["blob"]:
                    yield _unpack(bytes(blob))
        except ray.exceptions.ActorDiedError as exc:  # a worker could not even start
            raise OnnxvisError(
                f"a Ray worker could not start ({one_line(str(exc))[:300]}); every node needs onnxvis's dependencies "
                "(pip install 'onnxvis[ray]') and the model and images at the same paths"
            ) from None

    return run
