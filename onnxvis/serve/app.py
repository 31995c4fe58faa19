"""``onnxvis serve``: a local web page to explore one model (Starlette app, run by uvicorn).

The page (``onnxvis/serve/static``: plain HTML, CSS and JavaScript, no build step) asks JSON and PNG
endpoints answered by an :class:`~onnxvis.serve.explorer.Explorer`. This is the only module that imports
Starlette and uvicorn (``pip install 'onnxvis[serve]'``).

What it promises:

- it serves its page, its three static files and the pictures it makes, nothing else: no path from
  a request reaches the file system (static files are read from the package once, by fixed names);
- onnxruntime and drawing run in worker threads, never on the event loop;
- an upload is refused past :data:`~onnxvis.serve.explorer.MAX_UPLOAD_BYTES`, first by its declared
  Content-Length, then while it streams in, and is held in memory until it passed the image guards;
- every refusal is a 4xx answer with a JSON body ``{"error": "..."}`` the page shows;
- a Content-Security-Policy forbids the page to load anything from elsewhere, and on the loopback
  the Host header must name the loopback (so that another web site cannot reach the server through
  DNS rebinding).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import signal
import socket
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

import python_multipart  # noqa: F401  (Starlette parses uploads with it; missing, it is the serve extra that is missing)
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartParser
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onnxvis.errors import OnnxvisError, one_line
from onnxvis.serve.explorer import NotFound, Unavailable

if TYPE_CHECKING:
    from onnxvis.serve.explorer import Explorer

STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
BEYOND_LOOPBACK = (
    "warning: listening on {host}: anyone who can reach this machine on port {port} can see the model and "
    "send it photos; there is no login and no encryption"
)
# feature visualisation on the page: the steps of one optimisation (Lucent's default 512), and the most asked for
FEATURE_STEPS = 512
MAX_FEATURE_STEPS = 4096
# multipart framing around the photo: boundaries and part headers
_FORM_OVERHEAD = 64 * 1024


class _TooLarge(Exception):
    pass


class _Headers:
    """ASGI middleware: the security headers on every answer, errors included."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers={"cache-control": "no-store"})


def _png(data: bytes, **headers: str) -> Response:
    return Response(data, media_type="image/png", headers={"cache-control": "private, max-age=600", **headers})


def _int(request: Request, name: str, default: int | None = None) -> int | None:
    text = request.query_params.get(name)
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError:
        raise OnnxvisError(f"{name} must be a whole number, got {text[:40]!r}") from None


def _path_int(request: Request, name: str) -> int:
    text = request.path_params[name]
    try:
        return int(text)
    except ValueError:
        raise NotFound(f"{name} must be a whole number, got {text[:40]!r}") from None


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        yield chunk


def _package_file(name: str) -> bytes:
    return resources.files("onnxvis.serve").joinpath("static").joinpath(name).read_bytes()  # one step each: Python 3.10


def create_app(explorer: Explorer, allowed_hosts: list[str] | None = None) -> Starlette:
    """The Starlette app of the page over ``explorer``.

    Args:
        allowed_hosts: the Host headers accepted (Starlette's TrustedHostMiddleware); None for the
            loopback names only, ``["*"]`` for any.
    """
    index = _package_file("index.html")
    static = {name: _package_file(name) for name in STATIC}
    limit = explorer.max_upload

    async def page(request: Request) -> Response:
        return Response(index, media_type="text/html; charset=utf-8", headers={"cache-control": "no-cache"})

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:  # a fixed set of names: no request path reaches the file system
            return _error(404, "not found")
        return Response(static[name], media_type=STATIC[name], headers={"cache-control": "no-cache"})

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)  # no icon, and no 404 in the browser's console

    async def summary(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(explorer.summary))

    async def layers(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(explorer.layers))

    async def kernels(request: Request) -> Response:
        index = _path_int(request, "layer")
        colormap = request.query_params.get("colormap", "grey")
        split = _int(request, "split")
        return _png(await run_in_threadpool(explorer.kernels_png, index, colormap, split))

    async def upload(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit + _FORM_OVERHEAD:
            size = f"{int(declared) / 2**20:.1f} MB, more than the limit of {limit / 2**20:g} MB"
            return _error(413, f"the upload is {size}; give a smaller photo")
        kind = request.headers.get("content-type", "")
        data: bytes | bytearray
        try:
            if kind.startswith("multipart/form-data"):
                data = await _form_photo(request, limit)
            else:  # the photo itself as the body
                data = bytearray()
                async for chunk in _limited(request.stream(), limit):
                    data += chunk
        except _TooLarge:
            return _error(413, f"the upload is more than the limit of {limit / 2**20:g} MB; give a smaller photo")
        photo = await run_in_threadpool(explorer.add_photo, bytes(data))
        return JSONResponse(photo.to_dict())

    async def sample(request: Request) -> Response:
        photo = await run_in_threadpool(explorer.sample_photo)
        return JSONResponse(photo.to_dict())

    async def fmaps(request: Request) -> Response:
        index = _path_int(request, "layer")
        preset = request.query_params.get("preset")
        return _png(await run_in_threadpool(explorer.fmaps_png, request.path_params["photo"], index, preset))

    async def predictions(request: Request) -> Response:
        preset = request.query_params.get("preset")
        return JSONResponse(await run_in_threadpool(explorer.predictions, request.path_params["photo"], preset))

    async def cam(request: Request) -> Response:
        preset = request.query_params.get("preset")
        target = _int(request, "target")
        data, klass = await run_in_threadpool(explorer.cam_png, request.path_params["photo"], preset, target)
        return _png(data, **{"x-onnxvis-class": str(klass)})

    # One optimisation at a time per client (the page's id for itself): a new one cancels the last.
    running: dict[str, threading.Event] = {}
    running_lock = threading.Lock()

    async def features(request: Request) -> Response:
        """A stream of server-sent events: the channel's image every few steps, as it is optimised.
        It stops when done, when the same client starts another, or when the client goes (the page
        closed, or the page's cancel closed the stream)."""
        index = _path_int(request, "layer")
        channel = _path_int(request, "channel")
        steps = _int(request, "steps", FEATURE_STEPS)
        if steps is None or not 1 <= steps <= MAX_FEATURE_STEPS:
            raise OnnxvisError(f"steps must be between 1 and {MAX_FEATURE_STEPS}, got {steps}")
        client = request.query_params.get("client", "")[:64]
        await run_in_threadpool(explorer.features_place, index, channel)  # a bad layer or channel: a 4xx, not a stream
        cancel = threading.Event()
        with running_lock:
            before = running.get(client)
            if before is not None:
                before.set()
            running[client] = cancel
        loop = asyncio.get_running_loop()
        frames: asyncio.Queue[dict | None] = asyncio.Queue()

        def emit(frame: dict | None) -> None:
            loop.call_soon_threadsafe(frames.put_nowait, frame)

        def work() -> None:
            try:
                explorer.features(index, channel, steps, cancel.is_set, emit)
            except OnnxvisError as exc:
                emit({"error": one_line(str(exc))})
            except Exception as exc:  # noqa: BLE001  (the stream reports it; the server stays up)
                emit({"error": f"internal error ({type(exc).__name__}: {exc}); this is a bug in onnxvis, please report it"})
            finally:
                emit(None)

        async def stream() -> AsyncIterator[str]:
            worker = asyncio.ensure_future(run_in_threadpool(work))
            try:
                while True:
                    frame = await frames.get()
                    if frame is None:
                        yield "event: done\ndata: {}\n\n"
                        break
                    if "png" in frame:
                        frame = {**frame, "png": base64.b64encode(frame["png"]).decode()}
                    yield f"data: {json.dumps(frame)}\n\n"
            finally:
                cancel.set()  # the client went, or the run ended: the worker stops at its next step
                with running_lock:
                    if running.get(client) is cancel:
                        del running[client]
                del worker

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-store"})

    async def onnxvis_error(request: Request, exc: Exception) -> Response:
        status = 404 if isinstance(exc, NotFound) else 501 if isinstance(exc, Unavailable) else 400
        return _error(status, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail or "error")

    async def server_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, MemoryError):
            return _error(507, "out of memory: the photo or the layer is too large for this machine")
        return _error(500, f"internal error ({type(exc).__name__}: {exc}); this is a bug in onnxvis, please report it")

    routes = [
        Route("/", page),
        Route("/favicon.ico", favicon),
        Route("/static/{name}", static_file),
        Route("/api/summary", summary),
        Route("/api/layers", layers),
        Route("/api/kernels/{layer}.png", kernels),
        Route("/api/photos", upload, methods=["POST"]),
        Route("/api/photos/sample", sample, methods=["POST"]),
        Route("/api/fmaps/{photo}/{layer}.png", fmaps),
        Route("/api/predictions/{photo}", predictions),
        Route("/api/cam/{photo}.png", cam),
        Route("/api/features/{layer}/{channel}", features),
    ]
    hosts = LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts
    handlers: dict[Any, Callable] = {OnnxvisError: onnxvis_error, HTTPException: http_error, Exception: server_error}
    return Starlette(
        routes=routes,
        middleware=[Middleware(_Headers), Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
        exception_handlers=handlers,
    )


class _InMemoryParts(MultiPartParser):
    # Files up to the upload limit stay in memory: nothing is spooled to the system's temporary folder.
    spool_max_size = 1 << 30


async def _form_photo(request: Request, limit: int) -> bytes:
    """The one file of a multipart form (field ``image``), read with the size limit."""
    from starlette.formparsers import MultiPartException

    parser = _InMemoryParts(request.headers, _limited(request.stream(), limit + _FORM_OVERHEAD), max_files=1, max_fields=4)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise OnnxvisError(f"the upload is not a valid form ({exc}); send the photo as the field 'image'") from None
    try:
        part = form.get("image")
        if part is None or isinstance(part, str):
            raise OnnxvisError("the upload has no file in the field 'image'; choose a photo file")
        return await part.read()
    finally:
        await form.close()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so that a busy port is a clear error before the server starts."""
    if not 0 <= port <= 65535:
        raise OnnxvisError(f"the port must be between 0 and 65535, got {port}", setting="port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OnnxvisError(f"cannot listen on {host!r} ({exc.strerror}); give an address of this machine") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OnnxvisError(f"cannot listen on {host} port {port} ({exc.strerror}); choose another port", setting="port") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(explorer: Explorer, host: str = "127.0.0.1", port: int = 8000, say: Callable[[str], None] | None = None) -> None:
    """Serve the page until Ctrl-C (SIGINT) or SIGTERM; closes ``explorer`` (its temporary folder goes) on the way out."""
    say = say or (lambda line: print(line, flush=True))
    try:
        sock = bind(host, port)
        loopback = is_loopback(host)
        if not loopback:
            print(BEYOND_LOOPBACK.format(host=host, port=sock.getsockname()[1]), file=sys.stderr, flush=True)
        app = create_app(explorer, None if loopback else ["*"])
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=5)
        server = _AnnouncingServer(config, lambda: say(url_of(sock)))
        with _sigterm_exits():
            server.run(sockets=[sock])
    finally:
        explorer.close()


class _AnnouncingServer(uvicorn.Server):
    """Says the URL once uvicorn listens and holds its signal handlers: a client may stop the server
    as soon as it reads the URL, and a signal that came while the event loop was still being built
    left a traceback from the half-made loop."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]):
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._announce()


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """uvicorn stops on SIGTERM, then raises it again; with the default action the process would die
    there without removing its temporary folder, so the signal becomes a SystemExit (status 143)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
