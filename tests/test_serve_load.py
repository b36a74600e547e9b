"""A loopback load test of ``facefair serve``: 32 clients at once mixing good, oversized and
malformed uploads against a real uvicorn server on 127.0.0.1.

What must hold: no 5xx, every bad upload gets its own 4xx, and no more images are decoded at
once than ``max_decodes`` however many clients there are (that bound, not the client count, is
what caps the memory parallel uploads can take).  The model is untrained and tiny: this tests
the server, not predictions, and needs no data.
"""

from __future__ import annotations

import io
import resource
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

import facefair.serve.app as serve_app  # noqa: E402
from facefair.models.multitask import ModelConfig, MultiTaskModel  # noqa: E402
from facefair.serve.app import create_app  # noqa: E402
from facefair.tasks import make_tasks  # noqa: E402

CLIENTS = 32
ROUNDS = 3
MAX_DECODES = 2
MAX_BYTES = 200_000


def _encode(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _uploads() -> dict[str, tuple[bytes, int, str]]:
    """name -> (bytes, expected status, text the error must contain)."""
    rng = np.random.default_rng(0)
    face = Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    noise = Image.fromarray(rng.integers(0, 256, (400, 400, 3), dtype=np.uint8))
    jpeg = _encode(face, "JPEG", quality=90)
    return {
        "good.jpg": (jpeg, 200, ""),
        "good.png": (_encode(face.convert("RGBA"), "PNG"), 200, ""),
        "good.webp": (_encode(face, "WEBP"), 200, ""),
        "oversized.png": (_encode(noise, "PNG"), 413, "larger than the limit"),  # ~480 kB > 200 kB
        "bomb.png": (_png_header_only(30_000, 30_000), 413, "900000000 pixels"),
        "tall.png": (_png_header_only(10, 5_000), 413, "10x5000"),  # within pixels, over max_upload_side
        "random.jpg": (rng.integers(0, 256, 5_000, dtype=np.uint8).tobytes(), 415, "not an image"),
        "animated.gif": (_encode(face, "GIF"), 415, "not an image"),  # a real image, not an accepted format
        "truncated.jpg": (jpeg[: len(jpeg) // 2], 422, "truncated"),
        "empty.jpg": (b"", 422, "empty"),
    }


@pytest.fixture()
def server(monkeypatch):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch-1 forwards of a tiny net: more threads only contend with the clients
    model = MultiTaskModel(ModelConfig(backbone="mobilenetv2", image_size=32, dropout=0.0),
                           make_tasks(["gender", "race", "age"], "race5"), load_weights=False)
    # Count decodes in flight: the semaphore must hold it at MAX_DECODES with 32 clients waiting.
    real_read, lock, state = serve_app.read_upload, threading.Lock(), {"now": 0, "peak": 0}

    def counted_read(*args, **kwargs):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        try:
            time.sleep(0.005)  # a decode takes a moment; without the bound, clients would overlap here
            return real_read(*args, **kwargs)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(serve_app, "read_upload", counted_read)
    app = create_app(model, max_bytes=MAX_BYTES, max_upload_side=4000, max_pixels=4_000_000, max_decodes=MAX_DECODES)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # loopback only
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", limit_concurrency=None))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", state
    uv.should_exit = True
    thread.join(timeout=10)
    sock.close()
    torch.set_num_threads(threads)


def test_32_concurrent_clients_get_no_5xx_and_the_right_4xx(server, capsys):
    url, decodes = server
    uploads = _uploads()
    names = list(uploads)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def client(index: int) -> list[tuple[str, int, str]]:
        results = []
        with httpx.Client(base_url=url, timeout=30) as http:
            for round_ in range(ROUNDS):
                name = names[(index + round_ * 7) % len(names)]
                data = uploads[name][0]
                try:
                    response = http.post("/predict", files={"file": (name, data, "application/octet-stream")})
                    results.append((name, response.status_code, response.text))
                except httpx.TransportError as error:  # the server cut the connection: counted, not hidden
                    results.append((name, -1, repr(error)))
        return results

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [r for batch in pool.map(client, range(CLIENTS)) for r in batch]
    seconds = time.perf_counter() - started
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    assert len(results) == CLIENTS * ROUNDS
    server_errors = [r for r in results if r[1] >= 500 or r[1] < 0]
    assert not server_errors, server_errors[:3]
    for name, status, body in results:
        expected, text = uploads[name][1:]
        assert status == expected, (name, status, body[:200])
        assert text in body, (name, body[:200])
    assert {name for name, _, _ in results} == set(names)  # every kind of upload was exercised
    assert 1 <= decodes["peak"] <= MAX_DECODES, decodes
    by_status: dict[int, int] = {}
    for _, status, _ in results:
        by_status[status] = by_status.get(status, 0) + 1
    with capsys.disabled():
        print(f"\nserve load test: {CLIENTS} clients x {ROUNDS} uploads = {len(results)} requests in "
              f"{seconds:.1f} s; statuses {dict(sorted(by_status.items()))}; 0 5xx; decodes at once <= "
              f"{decodes['peak']} (limit {MAX_DECODES}); peak RSS {rss_peak:.0f} MiB "
              f"(before the load {rss_before:.0f} MiB)")
