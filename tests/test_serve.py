"""``onnxvis serve``: the Explorer behind the page, the Starlette app in-process, and a real server process.

In-process tests use Starlette's TestClient on a tiny classifier built with onnx.helper. The real
server (``python -m onnxvis serve`` on a free port) is driven over raw sockets where a client library
would tidy the request (``..`` in a path), and by 16 concurrent clients.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import signal
import socket
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import COFFEE, ESPRESSO, LABELS, ROOT, SQUEEZENET, ServerProcess, asset, classifier, photo, run_onnxvis

pytest.importorskip("starlette", reason="the serve extra is not installed (pip install '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install '.[serve]')")
pytest.importorskip("python_multipart", reason="the serve extra is not installed (pip install '.[serve]')")
httpx = pytest.importorskip("httpx2", reason="httpx2 (dev extra) is needed by Starlette's TestClient")

from starlette.testclient import TestClient  # noqa: E402

from onnxvis.engine.inspector import Inspector  # noqa: E402
from onnxvis.serve.app import create_app  # noqa: E402
from onnxvis.serve.explorer import LRU, MAX_UPLOAD_BYTES, Explorer  # noqa: E402

IDS = ("layers", "kernels", "image", "fmaps", "cam", "predictions", "error")


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture
def tiny(tmp_path) -> Path:
    return classifier(tmp_path / "tiny.onnx")


@pytest.fixture
def explorer(tiny):
    with Explorer(Inspector(tiny), cam=None) as ex:
        yield ex


@pytest.fixture
def client(explorer):
    with TestClient(create_app(explorer), base_url="http://127.0.0.1:8000") as c:
        yield c


def upload(client, data: bytes, name: str = "photo.png"):
    return client.post("/api/photos", files={"image": (name, data, "application/octet-stream")})


# ------------------------------------------------------------------------------------------------
# The page and what it may serve
# ------------------------------------------------------------------------------------------------


def test_page_has_every_element_and_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for name in IDS:
        assert f'id="{name}"' in page.text, name
    assert 'type="file" id="image"' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    # nothing from the network: every reference is our own absolute path
    for ref in ("http:", "https:", "//"):
        assert f'src="{ref}' not in page.text and f'href="{ref}' not in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and "fetch(" in js.text
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    [
        "/static/serve.py",
        "/static/explorer.py",
        "/static/index.html.bak",
        "/static/%2e%2e%2fserve.py",
        "/static/..%2f..%2fpyproject.toml",
        "/api/kernels/..%2f..%2fetc%2fpasswd.png",
        "/api/fmaps/%2e%2e%2f%2e%2e/0.png",
        "/etc/passwd",
        "/onnxvis/serve/app.py",
    ],
)
def test_no_request_path_reads_a_file(client, path):
    answer = client.get(path)
    assert answer.status_code in (400, 404), answer.text[:200]
    assert answer.json()["error"]
    assert "import" not in answer.text and "root:" not in answer.text


def test_host_header_must_name_the_loopback(client):
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"host": "localhost:8000"}).status_code == 200


# ------------------------------------------------------------------------------------------------
# Uploads: the size limit, the image guards, the temporary folder
# ------------------------------------------------------------------------------------------------


def test_a_photo_is_kept_under_its_hash_in_the_private_folder(client, explorer, tmp_path):
    data = photo(tmp_path / "a.png", 1).read_bytes()
    answer = upload(client, data)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == {"id": hashlib.sha256(data).hexdigest(), "width": 50, "height": 40}
    assert sorted(p.name for p in explorer.folder.iterdir()) == [f"{body['id']}.upload"]
    # the raw body works too (no multipart)
    raw = client.post("/api/photos", content=data, headers={"content-type": "image/png"})
    assert raw.json()["id"] == body["id"]


def _bomb() -> bytes:
    """A valid PNG header claiming 60000 x 60000 pixels (3.6 gigapixels), with almost no data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")

    header = (60000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data, words",
    [
        (b"this is a text file, not a photo\n", "not an image"),
        (b"", "empty"),
        (_bomb(), "pixels"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not an image"),
    ],
    ids=["text", "empty", "bomb", "broken-png"],
)
def test_a_bad_upload_is_a_4xx_with_a_json_error(client, explorer, data, words):
    answer = upload(client, data, "notes.txt")
    assert 400 <= answer.status_code < 500
    error = answer.json()["error"]
    assert words in error and "\n" not in error
    assert str(explorer.folder) not in error  # the message does not show our temporary file
    assert list(explorer.folder.iterdir()) == []  # nothing of it is kept
    assert client.get("/api/layers").status_code == 200  # and the server goes on


def test_the_same_photo_from_many_clients_at_once(explorer, tmp_path):
    data = photo(tmp_path / "same.png", 7).read_bytes()
    with ThreadPoolExecutor(16) as pool:
        photos = list(pool.map(lambda _: explorer.add_photo(data), range(64)))
    assert {p.id for p in photos} == {hashlib.sha256(data).hexdigest()}
    assert [p.name for p in explorer.folder.iterdir()] == [f"{photos[0].id}.upload"]  # no checking file left
    assert photos[0].path.read_bytes() == data


def test_odd_modes_go_through_the_guards(client, tmp_path):
    grey16 = Image.fromarray(np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 30)
    assert grey16.mode.startswith("I;16")
    out = io.BytesIO()
    grey16.save(out, format="PNG")
    rgba = png_bytes(np.full((30, 30, 4), 200, dtype=np.uint8))
    for data in (out.getvalue(), rgba):
        answer = upload(client, data)
        assert answer.status_code == 200, answer.text
        ident = answer.json()["id"]
        assert client.get(f"/api/fmaps/{ident}/0.png").status_code == 200


def test_a_form_without_the_photo_field(client):
    answer = client.post("/api/photos", files={"other": ("a.png", b"x", "image/png")})
    assert answer.status_code == 400 and "'image'" in answer.json()["error"]
    answer = client.post("/api/photos", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    assert answer.status_code == 400 and answer.json()["error"]


def test_too_large_by_content_length(client, explorer):
    data = b"\0" * (MAX_UPLOAD_BYTES + 70 * 1024)
    answer = upload(client, data)
    assert answer.status_code == 413
    assert "20 MB" in answer.json()["error"]
    assert list(explorer.folder.iterdir()) == []


def test_too_large_while_streaming(client, explorer):
    """No Content-Length (chunked): the body is counted as it comes and refused past the limit."""
    sent = []

    def body():
        for _ in range(30):
            sent.append(1)
            yield b"\0" * (1024 * 1024)

    answer = client.post("/api/photos", content=body(), headers={"content-type": "application/octet-stream"})
    assert answer.status_code == 413 and "limit" in answer.json()["error"]
    assert list(explorer.folder.iterdir()) == []


def test_just_under_the_limit_is_read(client):
    data = b"\0" * (MAX_UPLOAD_BYTES - 10)  # not an image, but read whole and judged by the image guard
    answer = client.post("/api/photos", content=data, headers={"content-type": "application/octet-stream"})
    assert answer.status_code == 400 and "not an image" in answer.json()["error"]


def test_old_photos_are_forgotten_and_their_files_removed(tiny, tmp_path):
    from onnxvis.image.preprocess import default_image_path

    with Explorer(Inspector(tiny), cam=None, max_photos=2) as ex:
        sample = ex.sample_photo()
        ids = [ex.add_photo(photo(tmp_path / f"{i}.png", i).read_bytes()).id for i in range(3)]
        assert sample.path == default_image_path() and sample.path.is_file()  # never ours to remove
        assert ex.photo("sample") == sample
        assert sorted(p.name for p in ex.folder.iterdir()) == sorted(f"{i}.upload" for i in ids[1:])
        with TestClient(create_app(ex), base_url="http://127.0.0.1") as c:
            gone = c.get(f"/api/predictions/{ids[0]}")
            assert gone.status_code == 404 and "upload it again" in gone.json()["error"]
            assert c.get(f"/api/predictions/{ids[2]}").status_code == 200
            assert c.get("/api/predictions/not-a-hash").status_code == 404
        folder = ex.folder
    assert not folder.exists()  # closing the Explorer removes its temporary folder


# ------------------------------------------------------------------------------------------------
# What the pictures and numbers are
# ------------------------------------------------------------------------------------------------


def test_summary_and_layers(client, explorer):
    summary = client.get("/api/summary").json()
    rows = {k: v for k, v in summary["rows"] if k}
    assert rows["producer"] == "tiny-maker 3.1"
    assert summary["preprocessing"].startswith(explorer.inspector.preprocessing.preprocess.name)
    assert "imagenet" in summary["presets"] and summary["cam"] is False and summary["labels"] == len(LABELS)
    layers = client.get("/api/layers").json()
    assert [layer["index"] for layer in layers] == [0, 1]
    first = layers[0]
    assert first["name"] == "stem/conv" and first["shape"] == [4, 3, 3, 3]
    weight = explorer.inspector.kernels(explorer.inspector.layers[0])
    assert first["stats"]["min"] == pytest.approx(float(weight.min()))
    assert first["stats"]["std"] == pytest.approx(float(weight.std()), rel=1e-5)
    assert first["stats"]["near_dead"] == 1 and first["stats"]["filters"] == 4  # filter 2 is all zero


def test_a_model_without_class_scores_shows_no_top5(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv"), helper.make_node("Relu", ["y"], ["r"])],
        "two-maps",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 14, 14]),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 4, 14, 14])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "maps.onnx"))
    with Explorer(Inspector(tmp_path / "maps.onnx"), cam=None) as ex, TestClient(create_app(ex), base_url="http://127.0.0.1") as c:
        summary = c.get("/api/summary").json()
        assert summary["predictions"] is False and "score per class" in summary["no_predictions"]
        ident = upload(c, photo(tmp_path / "p.png", 1).read_bytes()).json()["id"]
        assert c.get(f"/api/fmaps/{ident}/0.png").status_code == 200
        answer = c.get(f"/api/predictions/{ident}")
        assert answer.status_code == 400 and "score per class" in answer.json()["error"]


def test_a_model_without_an_image_input_still_shows_its_kernels(tmp_path):
    from conftest import conv_model

    conv_model(np.ones((4, 3, 3), np.float32), path=tmp_path / "conv1d.onnx")  # a 1-D conv: no image input
    with Explorer(Inspector(tmp_path / "conv1d.onnx"), cam=None) as ex, TestClient(create_app(ex), base_url="http://127.0.0.1") as c:
        summary = c.get("/api/summary").json()
        assert summary["photos"] is False and "not an image" in summary["no_photos"] and summary["predictions"] is False
        assert c.get("/api/layers").json()[0]["shape"] == [4, 3, 3]
        assert c.get("/api/kernels/0.png").status_code == 200
        c.post("/api/photos/sample")
        answer = c.get("/api/fmaps/sample/0.png")
        assert answer.status_code == 400 and "not an image" in answer.json()["error"]


def test_non_finite_weights_are_null_in_json(make_conv_model):
    weight = np.ones((2, 3, 3, 3), np.float32)
    weight[0, 0, 0, 0] = np.nan
    with Explorer(Inspector(make_conv_model(weight)), cam=None) as ex, TestClient(create_app(ex), base_url="http://127.0.0.1") as c:
        answer = c.get("/api/layers")
        assert answer.status_code == 200  # JSON has no NaN: Starlette would refuse to send it
        assert answer.json()[0]["stats"]["min"] is None
        # the kernels are drawn as the kernels command draws them, the NaN included
        from onnxvis.draw.layers import kernel_pixels

        picture = c.get("/api/kernels/0.png")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        expected, _ = kernel_pixels(ex.inspector.kernels(ex.inspector.layers[0]), ex.grid, None, "grey")
        np.testing.assert_array_equal(decode(picture.content), expected)


@pytest.mark.parametrize("colormap", ["grey", "diverging"])
def test_kernel_pictures_are_the_kernels_command_pictures(client, explorer, colormap):
    from onnxvis.draw.layers import kernel_pixels, split_pixels

    layer = explorer.inspector.layers[1]
    weight = explorer.inspector.kernels(layer)
    answer = client.get(f"/api/kernels/1.png?colormap={colormap}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    expected, _ = kernel_pixels(weight, explorer.grid, None, colormap)
    np.testing.assert_array_equal(decode(answer.content), expected)
    split = client.get(f"/api/kernels/1.png?colormap={colormap}&split=3")
    channels = dict(split_pixels(weight, explorer.grid, colormap))
    np.testing.assert_array_equal(decode(split.content), channels[3])
    assert not np.array_equal(decode(split.content), channels[2])


def test_kernel_requests_that_are_wrong(client):
    assert client.get("/api/kernels/9.png").status_code == 404
    assert client.get("/api/kernels/x.png").status_code == 404
    assert client.get("/api/kernels/0.png?split=4").status_code == 404
    assert client.get("/api/kernels/0.png?split=two").status_code == 400
    bad = client.get("/api/kernels/0.png?colormap=jet")
    assert bad.status_code == 400 and "grey or diverging" in bad.json()["error"]


def test_feature_maps_and_predictions_are_the_inspectors(client, explorer, tiny, tmp_path):
    from onnxvis.draw import grids

    path = photo(tmp_path / "p.png", 3)
    ident = upload(client, path.read_bytes()).json()["id"]
    insp = explorer.inspector
    for index, layer in enumerate(insp.layers):
        answer = client.get(f"/api/fmaps/{ident}/{index}.png")
        assert answer.status_code == 200
        maps = insp.feature_maps(path, [layer]).maps[layer]
        expected = grids.to_uint8(grids.fmap_grid(maps, nrow="auto"))  # the page draws near-square grids
        np.testing.assert_array_equal(decode(answer.content), expected)
    top = client.get(f"/api/predictions/{ident}").json()["top"]
    expected_top = insp.predict(path, top=5).top
    assert [(t["index"], t["label"]) for t in top] == [(i, label) for i, label, _ in expected_top]
    assert [t["score"] for t in top] == pytest.approx([s for _, _, s in expected_top], rel=1e-5)


def test_the_preset_changes_the_input(client, tmp_path):
    ident = upload(client, photo(tmp_path / "p.png", 4).read_bytes()).json()["id"]
    own = client.get(f"/api/fmaps/{ident}/0.png").content
    unit = client.get(f"/api/fmaps/{ident}/0.png?preset=unit")
    assert unit.status_code == 200 and decode(unit.content).shape == decode(own).shape
    assert not np.array_equal(decode(unit.content), decode(own))
    bad = client.get(f"/api/fmaps/{ident}/0.png?preset=nope")
    assert bad.status_code == 400 and "imagenet" in bad.json()["error"]


def test_a_page_built_without_cam_answers_501(client):
    answer = client.post("/api/photos/sample")
    assert answer.status_code == 200 and answer.json()["id"] == "sample"
    cam = client.get("/api/cam/sample.png")
    assert cam.status_code == 501 and "not available" in cam.json()["error"]


def test_the_page_has_onnxvis_cam_by_default(tiny, tmp_path):
    """serve imports onnxvis's CAM: the summary offers it, and its map is the one `onnxvis cam` draws
    (Grad-CAM at the default layer, the predicted class). A move or a rename of the CAM modules
    fails here instead of dropping CAM from the page."""
    from onnxvis import cli
    from onnxvis.image.preprocess import default_image_path

    with Explorer(Inspector(tiny)) as ex, TestClient(create_app(ex), base_url="http://127.0.0.1") as c:
        assert c.get("/api/summary").json()["cam"] is True
        c.post("/api/photos/sample")
        answer = c.get("/api/cam/sample.png")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/png" and answer.content.startswith(b"\x89PNG\r\n\x1a\n")
    with Inspector(tiny) as insp:
        (prediction,) = insp.predict([default_image_path()], top=1)
    assert answer.headers["x-onnxvis-class"] == str(prediction.top[0][0])
    assert cli.main(["cam", str(tiny), str(default_image_path()), "--method", "grad", "-o", str(tmp_path / "out")]) == 0
    (png,) = (tmp_path / "out").glob("*.png")
    np.testing.assert_array_equal(decode(answer.content), decode(png.read_bytes()))


def test_the_explorer_finds_onnxvis_own_cam_by_default(tiny):
    """As `onnxvis serve` makes it (the cam extra is installed in both test environments): the page has CAM."""
    with Explorer(Inspector(tiny)) as ex, TestClient(create_app(ex), base_url="http://127.0.0.1") as c:
        assert c.get("/api/summary").json()["cam"] is True
        c.post("/api/photos/sample")
        cam = c.get("/api/cam/sample.png")
        assert cam.status_code == 200, cam.text
        assert 0 <= int(cam.headers["x-onnxvis-class"]) < len(LABELS)
        assert decode(cam.content).shape == (24, 24, 3)  # drawn over the prepared photo
        assert c.get("/api/cam/sample.png?target=5").headers["x-onnxvis-class"] == "5"


def test_a_cam_function_plugs_in(tiny):
    calls = []

    def fake_cam(inspector, image, target):
        calls.append(target)
        return inspector.prepare(image).rgb[:, :, ::-1].copy(), 3 if target is None else target

    with Explorer(Inspector(tiny), cam=fake_cam) as ex, TestClient(create_app(ex), base_url="http://127.0.0.1") as c:
        assert c.get("/api/summary").json()["cam"] is True
        c.post("/api/photos/sample")
        first = c.get("/api/cam/sample.png")
        assert first.status_code == 200 and first.headers["x-onnxvis-class"] == "3"
        assert decode(first.content).shape == (24, 24, 3)  # drawn over the prepared photo
        assert c.get("/api/cam/sample.png?target=5").headers["x-onnxvis-class"] == "5"
        c.get("/api/cam/sample.png")  # cached: not computed again
        assert calls == [None, 5]


def test_results_are_cached_per_photo_layer_and_view(client, explorer, tmp_path):
    ident = upload(client, photo(tmp_path / "p.png", 5).read_bytes()).json()["id"]
    client.get(f"/api/fmaps/{ident}/0.png")
    before = explorer.stats()
    client.get(f"/api/fmaps/{ident}/0.png")
    after = explorer.stats()
    assert after["hits"] == before["hits"] + 1 and after["misses"] == before["misses"]
    client.get(f"/api/fmaps/{ident}/1.png")
    assert explorer.stats()["misses"] > after["misses"]


def test_the_lru_is_bounded_and_computes_once_for_many_waiters():
    lru = LRU(max_bytes=3000)
    for i in range(5):
        lru.get(i, lambda i=i: bytes(1000))
    assert len(lru) == 3  # 3000 bytes hold three values of 1000
    started, release = threading.Event(), threading.Event()
    computed = []

    def slow():
        computed.append(1)
        started.set()
        release.wait()
        return b"x"

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(lru.get, "k", slow) for _ in range(16)]
        started.wait()
        release.set()
        assert [f.result() for f in futures] == [b"x"] * 16
    assert computed == [1]

    def boom():
        raise ValueError("no")

    with pytest.raises(ValueError):
        lru.get("bad", boom)
    assert lru.get("bad", lambda: b"ok") == b"ok"  # an error is not cached


# ------------------------------------------------------------------------------------------------
# A real server process
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = asset(SQUEEZENET)
    srv = ServerProcess(model, tmp_path_factory.mktemp("serve"))
    yield srv
    srv.stop()


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/%2E%2E%2F%2E%2E%2Fserve.py",
        "/static/..%2f..%2fcli.py",
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/....//....//etc/passwd",
        "/api/fmaps/..%2f..%2f..%2fetc%2fpasswd/0.png",
        "/static/%252e%252e/serve.py",
    ],
)
def test_path_traversal_on_the_wire(server, path):
    host = f"{server.address[0]}:{server.address[1]}"
    answer = server.raw(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404), answer[:300]
    assert b"root:" not in answer and b"import " not in answer


def test_an_oversized_upload_is_refused_before_its_body(server):
    """The headers alone announce 30 MB; the answer comes although no byte of the body was sent."""
    host = f"{server.address[0]}:{server.address[1]}"
    head = (
        f"POST /api/photos HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {30 * 1024 * 1024}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(server.address) as sock:
        sock.sendall(head)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"error"' in answer and b"30.0 MB" in answer


def _client_session(url: str, coffee: bytes, layer: int) -> dict:
    with httpx.Client(base_url=url, timeout=600) as c:
        statuses = [c.get("/").status_code, c.get("/static/app.js").status_code, c.get("/api/layers").status_code]
        statuses.append(c.get(f"/api/kernels/{layer}.png").status_code)
        up = c.post("/api/photos", files={"image": ("coffee.png", coffee, "image/png")})
        statuses.append(up.status_code)
        ident = up.json()["id"]
        fmaps = c.get(f"/api/fmaps/{ident}/{layer}.png")
        statuses.append(fmaps.status_code)
        top = c.get(f"/api/predictions/{ident}")
        statuses.append(top.status_code)
        assert top.status_code == 200, top.text
        return {"statuses": statuses, "top": top.json()["top"], "fmaps": fmaps.content}


@pytest.mark.slow
def test_sixteen_concurrent_clients(server):
    coffee = asset(COFFEE).read_bytes()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: _client_session(server.url, coffee, i % 4), range(16)))
    for result in results:
        assert result["statuses"] == [200] * 7
        assert result["top"][0]["index"] == ESPRESSO and result["top"][0]["label"] == "espresso"  # ImageNet-1k's, guessed
    by_layer: dict[int, set] = {}
    for i, result in enumerate(results):
        by_layer.setdefault(i % 4, set()).add(hashlib.sha256(result["fmaps"]).hexdigest())
    assert all(len(pictures) == 1 for pictures in by_layer.values())  # the same picture for everyone
    assert len({next(iter(p)) for p in by_layer.values()}) == 4  # and a different one per layer


def test_squeezenet_coffee_is_espresso_and_its_pictures_are_real(server):
    with httpx.Client(base_url=server.url, timeout=600) as c:
        ident = c.post("/api/photos", files={"image": ("coffee.png", asset(COFFEE).read_bytes(), "image/png")}).json()["id"]
        top = c.get(f"/api/predictions/{ident}").json()["top"]
        assert len(top) == 5 and top[0]["index"] == ESPRESSO and top[0]["score"] > 0.5
        kernels = decode(c.get("/api/kernels/0.png").content)
        assert kernels.shape[2] == 3 and kernels.std() > 10  # 64 RGB 3x3 kernels, not a flat picture
        fmaps = decode(c.get(f"/api/fmaps/{ident}/0.png").content)
        assert fmaps.ndim == 2 and fmaps.shape[0] > 400 and fmaps.std() > 10
        assert c.get("/api/summary").json()["cam"] is True  # onnxvis has CAM, and serve finds it
        cam = c.get(f"/api/cam/{ident}.png")
        assert cam.status_code == 200 and cam.headers["x-onnxvis-class"] == str(ESPRESSO)
        assert decode(cam.content).shape == (224, 224, 3)
        picked = c.get(f"/api/cam/{ident}.png?target={top[1]['index']}")
        assert picked.headers["x-onnxvis-class"] == str(top[1]["index"]) and picked.content != cam.content


def test_ctrl_c_stops_cleanly_and_removes_the_temporary_folder(tmp_path, tiny):
    srv = ServerProcess(tiny, tmp_path)
    with httpx.Client(base_url=srv.url, timeout=600) as c:
        up = c.post("/api/photos", files={"image": ("a.png", photo(tmp_path / "a.png", 1).read_bytes(), "image/png")})
        assert up.status_code == 200
    [folder] = [p for p in srv.tmp.iterdir() if p.name.startswith("onnxvis-serve-")]
    assert [p.name for p in folder.iterdir()] == [f"{up.json()['id']}.upload"]
    code = srv.stop(signal.SIGINT)
    assert code == 130, srv.stderr()
    assert srv.stderr().strip().splitlines()[-1] == "onnxvis: interrupted"
    assert "Traceback" not in srv.stderr()
    assert list(srv.tmp.iterdir()) == []


def test_sigterm_also_removes_the_temporary_folder(tmp_path, tiny):
    srv = ServerProcess(tiny, tmp_path)
    assert len(list(srv.tmp.iterdir())) == 1
    assert srv.stop(signal.SIGTERM) == 128 + signal.SIGTERM
    assert "Traceback" not in srv.stderr()
    assert list(srv.tmp.iterdir()) == []


def test_beyond_the_loopback_says_what_it_means(tmp_path, tiny):
    srv = ServerProcess(tiny, tmp_path, "--host", "0.0.0.0")
    try:
        warning = [line for line in srv.stderr().splitlines() if "0.0.0.0" in line]
        assert len(warning) == 1 and "anyone who can reach this machine" in warning[0]
        with httpx.Client(timeout=600) as c:  # any Host header is accepted once the user chose to be reachable
            assert c.get(f"http://127.0.0.1:{srv.address[1]}/", headers={"host": "my-box:1"}).status_code == 200
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------


def test_a_busy_port_is_one_line(cli, tiny):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        done = cli("serve", tiny, "--port", str(busy.getsockname()[1]))
    assert done.returncode == 2
    assert done.stderr.startswith("onnxvis: error: cannot listen on 127.0.0.1 port") and "--port" in done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""


def test_a_bad_port_is_one_line(cli, tiny):
    done = cli("serve", tiny, "--port", "70000")
    assert done.returncode == 2 and "the port must be between 0 and 65535, got 70000 (set with --port N)" in done.stderr


def test_without_the_extra_it_says_what_to_install(tmp_path, tiny):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "starlette.py").write_text("raise ModuleNotFoundError(\"No module named 'starlette'\", name='starlette')\n")
    done = run_onnxvis("serve", str(tiny), env={"PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"}, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("onnxvis: error:") and "pip install 'onnxvis[serve]'" in done.stderr


# ------------------------------------------------------------------------------------------------
# Feature visualisation on the page
# ------------------------------------------------------------------------------------------------


def _events(response) -> list[dict]:
    import json

    frames, text = [], ""
    for chunk in response.iter_text():
        text += chunk
        while "\n\n" in text:
            message, text = text.split("\n\n", 1)
            if message.startswith("event: done"):
                frames.append({"done": True})
                continue
            frames.append(json.loads(message.removeprefix("data: ")))
    return frames


def test_features_stream_frames_until_done(client):
    with client.stream("GET", "/api/features/1/2?steps=20&client=a") as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        frames = _events(response)
    assert frames[-1] == {"done": True}
    steps = [f["step"] for f in frames[:-1]]
    assert steps == [16, 20]  # every 16 steps, and the last
    import base64

    picture = decode(base64.b64decode(frames[-2]["png"]))
    assert picture.shape == (128, 128, 3) and picture.std() > 0
    assert all(f["steps"] == 20 for f in frames[:-1])


def test_features_refusals_are_4xx_json(client):
    assert client.get("/api/features/99/0").status_code == 404
    bad = client.get("/api/features/1/999?client=a")
    assert bad.status_code == 400 and "out of range" in bad.json()["error"]
    assert client.get("/api/features/1/0?steps=0").status_code == 400


async def _drive(app, path: str, query: str, go: "asyncio.Event", first: "asyncio.Event") -> None:
    """One GET through the ASGI app, as a server would run it: the client goes (``http.disconnect``) when ``go`` is set;
    ``first`` is set when the first body bytes were sent."""
    asked = False

    async def receive():
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await go.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.body" and message.get("body"):
            first.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": query.encode(), "headers": [(b"host", b"127.0.0.1:8000")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "root_path": ""}
    await app(scope, receive, send)


def test_features_cancelled_when_the_client_goes_or_starts_another(explorer, monkeypatch):
    # the worker is told to stop (its cancelled() turns True) when the client goes (the page closed, or its cancel
    # aborted the fetch), and when the same client asks for another optimisation; never otherwise
    import asyncio
    import time

    seen: list = []

    def slow(index, channel, steps, cancelled, emit, every=16):
        seen.append(cancelled)
        for step in range(20_000):
            if cancelled():
                return
            if step % 20 == 0:
                emit({"step": step, "steps": steps, "value": 0.0, "png": b"x"})
            time.sleep(0.001)

    monkeypatch.setattr(explorer, "features", slow)
    app = create_app(explorer)

    async def scenario() -> None:
        go_a, first_a = asyncio.Event(), asyncio.Event()
        a = asyncio.ensure_future(_drive(app, "/api/features/1/0", "client=a", go_a, first_a))
        await asyncio.wait_for(first_a.wait(), 10)
        await asyncio.sleep(0.2)
        assert not seen[0](), "cancelled while the client was still there"
        go_a.set()  # the client goes
        await asyncio.wait_for(a, 10)
        for _ in range(100):
            if seen[0]():
                break
            await asyncio.sleep(0.02)
        assert seen[0](), "the client went but the optimisation was not cancelled"
        # one at a time per client: client b's second optimisation cancels its first, not client c's
        events = [(asyncio.Event(), asyncio.Event()) for _ in range(3)]
        runs = []
        for (go, first), (channel, client) in zip(events, [(0, "b"), (1, "c"), (2, "b")], strict=True):
            runs.append(asyncio.ensure_future(_drive(app, f"/api/features/1/{channel}", f"client={client}", go, first)))
            await asyncio.wait_for(first.wait(), 10)
        for _ in range(100):
            if seen[1]():
                break
            await asyncio.sleep(0.02)
        assert seen[1](), "a second optimisation of the same client did not cancel its first"
        assert not seen[2]() and not seen[3](), "another client's optimisation, or the new one, was cancelled"
        for go, _ in events:
            go.set()
        await asyncio.wait_for(asyncio.gather(*runs), 10)

    asyncio.run(scenario())
