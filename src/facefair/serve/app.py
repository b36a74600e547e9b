"""The FastAPI app: ``POST /predict``, ``GET /`` (the web page), ``GET /health``.

Everything the app needs (model, detector, limits) lives in the closure of :func:`create_app`
and on ``app.state``; there is no module state, so tests can build several apps side by side."""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from facefair.inference.engine import model_device
from facefair.inference.sources import load_model
from facefair.runtime import select_device
from facefair.serve.config import ServeConfig
from facefair.serve.predictor import Predictor
from facefair.serve.uploads import UploadError, describe_bytes, read_upload

if TYPE_CHECKING:
    from torch import nn

#: Room for the multipart envelope (boundaries, part headers) around a file of ``max_bytes``.
MULTIPART_OVERHEAD = 64 * 1024


class BodyLimit:
    """Answers 413 as soon as a request body passes ``limit`` bytes while it streams in, so an
    oversized upload is never spooled to disk; a declared Content-Length is checked before reading.

    Raising from ``receive`` would not work: FastAPI turns any error while parsing a form into a
    400.  Instead the 413 is sent here, the app is told the client went away, and whatever the app
    answers after that is dropped."""

    def __init__(self, app, limit: int, message: str):
        self.app, self.limit, self.message = app, limit, message

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _drain(receive)
            return await _send_413(send, self.message)
        received, started, refused = 0, False, False

        async def limited_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit and not started:
                    refused = True
                    if message.get("more_body", False):
                        await _drain(receive)
                    await _send_413(send, self.message)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


#: A refused body is read on (and dropped) up to this much before the 413 goes out: a client is still
#: sending when it is refused, and closing a connection with unread data resets it, which loses the
#: answer.  Only bandwidth is spent, no memory; past this the connection is simply closed.
DRAIN_BYTES = 16 * 2**20


async def _drain(receive) -> None:
    budget = DRAIN_BYTES
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _send_413(send, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def docs_page(schema: dict) -> str:
    """The API's endpoints as a self-contained page: no script, nothing fetched from elsewhere."""
    from html import escape
    rows = []
    for path, methods in schema.get("paths", {}).items():
        for method, operation in methods.items():
            fields = []
            body = operation.get("requestBody", {}).get("content", {})
            for content_type, content in body.items():
                ref = content.get("schema", {}).get("$ref", "")
                component = schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1], {})
                names = ", ".join(component.get("properties", {})) or "-"
                fields.append(f"{escape(content_type)}: {escape(names)}")
            rows.append(f"<tr><td><code>{escape(method.upper())}</code></td><td><code>{escape(path)}</code></td>"
                        f"<td>{escape(operation.get('summary', ''))}</td><td>{'<br>'.join(fields) or '-'}</td></tr>")
    from facefair.pages import document, header

    title = f"{schema.get('info', {}).get('title', 'API')} API"
    return document(title, [
        header(title, escape(schema.get("info", {}).get("description", ""))),
        "<p>The OpenAPI schema is at <a href='/openapi.json'>/openapi.json</a> (load it into any OpenAPI "
        "viewer). The interactive Swagger UI page is off: it loads its scripts from a CDN, and this server "
        "works offline.</p><table><tr><th>method</th><th>path</th><th>what</th><th>body</th></tr>"
        + "".join(rows) + "</table>",
        "<p>Example: <code>curl -F file=@photo.jpg http://HOST:PORT/predict</code></p>"])


def create_app(checkpoint: "str | Path | nn.Module", *, config: Optional[ServeConfig] = None,
               detector=None, **settings) -> FastAPI:
    """The app serving ``checkpoint``: a run or model folder / ``.pt`` path, or a loaded model of
    any registered architecture (MultiTaskModel, FineFACE, the adversarial model).

    Settings are :class:`ServeConfig` fields (``detect='none'``, ``max_bytes``, ``max_upload_side``,
    ``max_pixels``, ``device``, ``tta``, ``max_side``, ``demo_image`` ...), or pass a whole ``config``;
    the inference ones default to :data:`facefair.inference.DEFAULTS`, as in ``facefair predict``.
    ``detector``: an object with ``detect(rgb_uint8) -> [facefair.align.detectors.Face]`` to use
    instead of building ``config.detect`` (tests, custom detectors)."""
    if config is None:
        name = str(checkpoint) if isinstance(checkpoint, (str, Path)) else "<model>"
        config = ServeConfig(checkpoint=name, **settings)
    elif settings:
        raise TypeError("give either config or keyword settings, not both")
    if config.demo_image is not None and not Path(config.demo_image).is_file():
        raise FileNotFoundError(f"demo image {config.demo_image} not found")
    model = (load_model(checkpoint, config.settings(), trust_checkpoint=config.trust_checkpoint)
             if isinstance(checkpoint, (str, Path)) else checkpoint.to(select_device(config.device)).eval())
    if detector is None and config.detect != "none":
        from facefair.inference.photos import build_detector
        detector = build_detector(config.detect, model_device(model), config.settings())
    predictor = Predictor(model, config, detector)
    static = resources.files("facefair.serve") / "static"
    page = (static / "index.html").read_text(encoding="utf-8")

    decode_slots = asyncio.Semaphore(config.max_decodes)
    # FastAPI's /docs and /redoc pages load Swagger UI / ReDoc scripts from a CDN, which breaks
    # offline and sends every visitor's browser to a third party; neither ships with the package.
    # /docs is a local page instead (the endpoints, and the schema at /openapi.json).
    app = FastAPI(title="facefair", version="1", description="Face attribute predictions (gender, race, age).",
                  docs_url=None, redoc_url=None)
    app.state.config, app.state.predictor = config, predictor
    app.mount("/static", StaticFiles(packages=[("facefair.serve", "static")]), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": predictor.describe(), "limits": config.limits(),
                "demo": config.demo_image is not None}

    @app.get("/demo.jpg", include_in_schema=False)
    def demo() -> FileResponse:
        if config.demo_image is None:
            raise HTTPException(404, "no demo image configured (facefair serve --demo-image PATH)")
        return FileResponse(config.demo_image)

    @app.post("/predict")
    async def predict(file: Optional[UploadFile] = File(None, description="the photo or face crop")) -> dict:
        # Optional in the signature so a missing file gets our message rather than pydantic's.
        if file is None:
            raise HTTPException(422, "no image: send it as multipart/form-data field 'file'")
        started = time.perf_counter()
        data = await file.read(config.max_bytes + 1)  # one byte over is enough to know it is too big
        # Decoding and the model are CPU-bound: keep them off the event loop.  A slot is held from
        # decode to prediction, so at most max_decodes decoded images exist at once however many
        # clients upload in parallel; the others wait with only their (size-limited) bytes.
        async with decode_slots:
            waited = time.perf_counter()
            try:
                upload = await run_in_threadpool(read_upload, data, config, draft_size=predictor.draft_size)
            except UploadError as error:
                raise HTTPException(error.status, error.message) from None
            decoded = time.perf_counter()
            faces = await run_in_threadpool(predictor.faces, upload)
        done = time.perf_counter()
        return {"faces": faces,
                "image": {"width": upload.width, "height": upload.height, "format": upload.format,
                          "filename": file.filename},
                "detect": predictor.describe()["detect"],
                "timing_ms": {"queue": round((waited - started) * 1000, 1),
                              "decode": round((decoded - waited) * 1000, 1),
                              "model": round((done - decoded) * 1000, 1),
                              "total": round((done - started) * 1000, 1)}}

    app.add_middleware(BodyLimit, limit=config.max_bytes + MULTIPART_OVERHEAD,
                       message=f"upload is larger than the limit of {describe_bytes(config.max_bytes)}")
    return app
