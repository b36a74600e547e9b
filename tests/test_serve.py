"""``facefair serve``: the API through FastAPI's TestClient and through a real uvicorn server, and
the web page in headless Chromium (a screenshot is written for a person to look at)."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")  # python-multipart: FastAPI's form parser
from fastapi.testclient import TestClient  # noqa: E402

from facefair.cli import build_parser  # noqa: E402
from facefair.models.multitask import load_model  # noqa: E402
from facefair.inference import InferenceSettings  # noqa: E402
from facefair.inference.engine import predict_files  # noqa: E402
from facefair.serve.app import create_app  # noqa: E402
from facefair.serve.config import ServeConfig  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BOX_COLOURS = [(0xE6, 0x19, 0x4B), (0x2F, 0x9E, 0x44), (0x2F, 0x5B, 0xD3)]  # first colours in app.js
FACE_ORIGINS = [(30, 50), (260, 50), (490, 50)]  # where the group photo has its 200x200 faces


@pytest.fixture(scope="module")
def face_path(utk_sample) -> Path:
    return sorted(utk_sample.glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def model(tiny_run):
    return load_model(tiny_run / "best.pt")


@pytest.fixture(scope="module")
def client(tiny_run, face_path):
    return TestClient(create_app(tiny_run / "best.pt", demo_image=str(face_path)))


@pytest.fixture(scope="module")
def group_photo(utk_sample, tmp_path_factory) -> Path:
    """Three real faces side by side on a plain background (made in a temp dir, not the repo)."""
    canvas = Image.new("RGB", (720, 300), (236, 236, 230))
    for path, origin in zip(sorted(utk_sample.glob("*.jpg"))[::97], FACE_ORIGINS):
        canvas.paste(Image.open(path).convert("RGB"), origin)
    out = tmp_path_factory.mktemp("group") / "group.jpg"
    canvas.save(out, quality=92)
    return out


class StubDetector:
    """Known boxes where the group photo's faces are, so the multi-face path runs without dlib."""

    def detect(self, image: np.ndarray):
        from facefair.align.chips import MTCNN5_TEMPLATE
        from facefair.align.detectors import Face
        scale = image.shape[1] / 720  # the predictor may hand us a shrunk copy
        faces = []
        for i, (x, y) in enumerate(FACE_ORIGINS):
            x0, y0, side = (x + 20) * scale, (y + 20) * scale, 160 * scale
            landmarks = np.array([x0, y0]) + MTCNN5_TEMPLATE * side
            faces.append(Face((x0, y0, x0 + side, y0 + side), 1.0 - i / 10, landmarks, "mtcnn5"))
        return faces


def _jpeg(size=(200, 200), **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 90, 60)).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def _post(client, data: bytes, name="face.jpg", field="file", kind="image/jpeg"):
    return client.post("/predict", files={field: (name, data, kind)})


def test_health_page_and_static_files(client, model):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["demo"] is True
    assert [t["name"] for t in health["model"]["tasks"]] == [t.name for t in model.tasks]
    assert health["model"]["input_size"] == model.config.resolved_size() and health["model"]["detect"] == "none"
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="canvas"' in page.text and "static/app.js" in page.text
    assert "http" not in page.text.split("<body", 1)[1]  # nothing fetched from the internet
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert client.get("/demo.jpg").status_code == 200


def test_predict_real_face_matches_facefair_predict(client, model, face_path):
    response = _post(client, face_path.read_bytes(), face_path.name)
    assert response.status_code == 200, response.text
    body = response.json()
    width, height = Image.open(face_path).size
    assert body["image"] == {"width": width, "height": height, "format": "JPEG", "filename": face_path.name}
    assert body["detect"] == "none" and set(body["timing_ms"]) == {"queue", "decode", "model", "total"}
    [face] = body["faces"]
    assert face["box"] == [0, 0, width, height]  # no detector: the whole image is the face

    # Same preprocessing and model as ``facefair predict`` on the file: same numbers.
    expected = predict_files(model, [str(face_path)], InferenceSettings(batch_size=1), workers=0,
                             progress=False).iloc[0]
    for task in model.tasks:
        if task.kind == "regression":
            assert face[task.name] == pytest.approx(expected[f"{task.name}_pred"], abs=1e-3)
            continue
        prediction = face["predictions"][task.name]
        assert list(prediction["probs"]) == list(task.classes)
        assert sum(prediction["probs"].values()) == pytest.approx(1, abs=1e-5)
        assert prediction["label"] == expected[f"{task.name}_pred"]
        for name, p in prediction["probs"].items():
            assert p == pytest.approx(expected[f"{task.name}_prob_{name}"], abs=1e-5)


def test_png_and_exif_rotation(client):
    buffer = io.BytesIO()
    Image.new("RGBA", (90, 60), (10, 200, 30, 255)).save(buffer, "PNG")
    assert _post(client, buffer.getvalue(), "x.png", kind="image/png").json()["faces"][0]["box"] == [0, 0, 90, 60]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": browsers show it 100 wide, 200 high
    body = _post(client, _jpeg((200, 100), exif=exif)).json()
    assert body["image"]["width"] == 100 and body["image"]["height"] == 200
    assert body["faces"][0]["box"] == [0, 0, 100, 200]


def test_bad_requests_get_clear_4xx(tiny_run, client, face_path):
    strict = TestClient(create_app(tiny_run / "best.pt", max_bytes=20_000, max_upload_side=1000,
                                   max_pixels=100_000))
    noise = np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    big = io.BytesIO()
    Image.fromarray(noise).save(big, "PNG")  # ~68 kB: over 20 kB, but only 22,500 pixels
    cases = [
        (strict, _post(strict, big.getvalue(), "noise.png"), 413, "larger than the limit"),
        (strict, _post(strict, _jpeg((400, 400))), 413, "400x400"),      # 160,000 pixels > 100,000
        (strict, _post(strict, _jpeg((1200, 10))), 413, "1000 px per side"),
        (client, _post(client, b"name,age\nx,3\n", "table.csv", kind="text/csv"), 415, "not an image"),
        (client, _post(client, _jpeg()[:300]), 422, "corrupt image header"),
        (client, _post(client, face_path.read_bytes()[:3000]), 422, "truncated"),  # cut in the pixel data
        (client, _post(client, b""), 422, "empty"),
        (client, client.post("/predict"), 422, "no image"),
        (client, _post(client, _jpeg(), field="photo"), 422, "no image"),
    ]
    for _, response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]
    pdf = _post(client, b"%PDF-1.4\n" + b"0" * 100, "doc.pdf", kind="application/pdf")
    assert pdf.status_code == 415

    # A body streamed without Content-Length is cut off at the limit too, not spooled to the end.
    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        for _ in range(50):
            yield b"x" * 10_000
    streamed = strict.post("/predict", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413 and "limit" in streamed.json()["detail"]


def test_detector_path_multiple_faces(model, group_photo):
    pytest.importorskip("facefair.align.chips")
    app = create_app(model, detector=StubDetector(), max_side=360)  # detection on a half-size copy
    body = _post(TestClient(app), group_photo.read_bytes(), "group.jpg").json()
    assert body["image"]["width"] == 720 and len(body["faces"]) == 3
    for face, (x, y) in zip(body["faces"], FACE_ORIGINS):
        assert face["box"] == pytest.approx([x + 20, y + 20, x + 180, y + 180], abs=0.5)  # full-size coordinates
        assert set(face["predictions"]) == {"gender", "race", "age_group"} and 0 < face["age"] < 120
        assert "score" in face


def test_real_detector_when_installed(tiny_run, group_photo):
    pytest.importorskip("facefair.align.detectors")
    try:
        app = create_app(tiny_run / "best.pt", detect="dlib-hog")
    except ValueError as error:
        pytest.skip(str(error))
    body = _post(TestClient(app), group_photo.read_bytes(), "group.jpg").json()
    centres = sorted((f["box"][0] + f["box"][2]) / 2 for f in body["faces"])
    assert len(centres) == 3 and all(x < c < x + 200 for c, (x, _) in zip(centres, FACE_ORIGINS))
    blank = _post(TestClient(app), _jpeg((300, 200))).json()
    assert blank["faces"] == []  # no face is an answer, not an error


def test_cli_arguments_and_config_validation():
    args = build_parser().parse_args(["serve", "run/best.pt", "--detect", "dlib-hog", "--port", "0",
                                      "--max-mb", "2", "--demo-image", "x.jpg"])
    assert (args.detect, args.port, args.max_mb, args.demo_image, args.host) == ("dlib-hog", 0, 2.0, "x.jpg",
                                                                                   "127.0.0.1")
    with pytest.raises(ValueError, match="unknown detect"):
        ServeConfig(checkpoint="x", detect="opencv")
    with pytest.raises(ValueError, match="max_bytes"):
        ServeConfig(checkpoint="x", max_bytes=0)


def test_cli_builds_the_app_it_serves(tiny_run, face_path, monkeypatch, capsys):
    uvicorn = pytest.importorskip("uvicorn")
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    from facefair.cli import main
    assert main(["serve", str(tiny_run / "best.pt"), "--port", "0", "--max-mb", "0.5", "--max-upload-side", "300",
                 "--max-side", "640", "--demo-image", str(face_path)]) == 0
    assert (served["host"], served["port"]) == ("127.0.0.1", 0) and "http://127.0.0.1:0/" in capsys.readouterr().out
    config = served["app"].state.config
    assert (config.max_bytes, config.max_upload_side, config.max_side, config.detect) == (2**19, 300, 640, "none")
    http = TestClient(served["app"])
    assert http.get("/health").json()["demo"] is True
    assert _post(http, _jpeg((400, 200))).status_code == 413


@pytest.fixture(scope="module")
def live_server(model, group_photo):
    """The app under a real uvicorn on 127.0.0.1 (an OS-chosen free port), in a thread."""
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("facefair.align.chips")
    app = create_app(model, detector=StubDetector(), demo_image=str(group_photo))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_uvicorn_server_with_httpx(live_server, group_photo):
    httpx = pytest.importorskip("httpx")
    with httpx.Client(base_url=live_server, timeout=30) as http:
        assert http.get("/health").json()["status"] == "ok"
        response = http.post("/predict", files={"file": ("group.jpg", group_photo.read_bytes(), "image/jpeg")})
        assert response.status_code == 200 and len(response.json()["faces"]) == 3
        bad = http.post("/predict", files={"file": ("x.txt", b"not an image", "text/plain")})
        assert bad.status_code == 415 and "not an image" in bad.json()["detail"]


def _chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=20000", *args],
            capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium) for the page test")
def test_page_in_headless_chromium(live_server, tmp_path):
    url = f"{live_server}/?demo=1"  # the page fetches /demo.jpg and posts it to /predict itself
    dom = _chromium("--dump-dom", url).stdout
    assert 'data-state="done"' in dom, dom[-2000:]
    assert "3 faces in 720×300 px" in dom and dom.count("<tr>") == 4  # header + one row per face
    assert "Age group" in dom and "Gender" in dom

    shot = tmp_path / "serve-page.png"
    _chromium("--window-size=1000,900", f"--screenshot={shot}", url)
    assert shot.is_file(), "chromium wrote no screenshot"
    if os.environ.get("FACEFAIR_SCREENSHOT_DIR"):  # keep it for a person to look at
        shutil.copy(shot, Path(os.environ["FACEFAIR_SCREENSHOT_DIR"]) / shot.name)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    for colour in BOX_COLOURS:  # each face's box (and label) was drawn in its colour
        assert (np.abs(pixels - colour).sum(axis=1) < 30).sum() > 500, colour


def test_docs_page_needs_no_internet(client):
    # Issue 32: /docs loaded Swagger UI's scripts from a CDN (a blank page offline).
    page = client.get("/docs")
    assert page.status_code == 200
    assert "<script" not in page.text and "/openapi.json" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)   # nothing fetched from elsewhere
    assert "/predict" in page.text and "POST" in page.text
    assert client.get("/openapi.json").json()["paths"]["/predict"]
    assert client.get("/redoc").status_code == 404


@pytest.mark.parametrize("side", [1, 20])
def test_tiny_upload_is_predicted_with_a_warning(client, side):
    # Issue 32: a 1x1 upload came back as a face with "Male 0.70" and no word of doubt.
    answer = client.post("/predict", files={"file": ("tiny.jpg", _jpeg((side, side)), "image/jpeg")})
    assert answer.status_code == 200
    face = answer.json()["faces"][0]
    assert f"small face: {side}x{side} px" in face["warning"] and face["predictions"]


def test_face_sized_upload_has_no_warning(client):
    answer = client.post("/predict", files={"file": ("face.jpg", _jpeg((200, 200)), "image/jpeg")})
    assert "warning" not in answer.json()["faces"][0]
