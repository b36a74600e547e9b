"""``facefair serve CHECKPOINT``: the HTTP API and web page (needs ``fastapi``, ``uvicorn``,
``python-multipart``; imported only when the command runs, so ``facefair`` works without them)."""

from __future__ import annotations


from facefair.flags import add_bf16_flag, add_chip_flags, add_device_flag, add_trust_flag, add_tta_flag
from facefair.serve.config import DETECT_CHOICES, ServeConfig


def _serve(args) -> int:
    try:
        import uvicorn
        from facefair.serve.app import create_app
    except ImportError as error:
        raise ValueError(f"facefair serve needs the serving packages ({error.name} is missing): "
                         "pip install fastapi uvicorn python-multipart") from error
    config = ServeConfig(checkpoint=args.checkpoint, detect=args.detect, device=args.device, tta=args.tta,
                         bf16=args.bf16, max_side=args.max_side, chip_size=args.chip_size, padding=args.padding,
                         min_face=args.min_face, max_bytes=int(args.max_mb * 2**20),
                         max_upload_side=args.max_upload_side, max_pixels=int(args.max_megapixels * 1e6),
                         max_faces=args.max_faces, max_decodes=args.max_decodes, demo_image=args.demo_image,
                         trust_checkpoint=args.trust_checkpoint)
    app = create_app(args.checkpoint, config=config)
    print(f"facefair serve: http://{args.host}:{args.port}/  (POST /predict, GET /health)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def register(subparsers) -> None:
    defaults = ServeConfig(checkpoint="")
    parser = subparsers.add_parser(
        "serve", help="HTTP API + web page: POST a photo, get faces with predictions",
        description="Serve a trained model over HTTP: POST /predict (multipart field 'file') returns the faces "
                    "with their predictions; GET / is a page to drop a photo on; GET /health describes the "
                    "model. With --detect none each upload is one already-cropped face.")
    parser.add_argument("checkpoint", help="a run folder (or its best.pt), or an exported model folder")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it to "
                                                                     "the network)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--detect", choices=DETECT_CHOICES, default="none",
                        help="face detector from facefair.align (none: uploads are face crops)")
    # The inference flags mean what they mean in `facefair predict`, with the same defaults.
    add_device_flag(parser, defaults.device)
    add_tta_flag(parser)
    add_bf16_flag(parser, defaults.bf16)
    add_chip_flags(parser, defaults)
    limits = parser.add_argument_group("limits (uploads past them are refused)")
    limits.add_argument("--max-mb", type=float, default=defaults.max_bytes / 2**20, help="largest upload, MiB")
    limits.add_argument("--max-upload-side", type=int, default=defaults.max_upload_side,
                        help="largest image side accepted, pixels")
    limits.add_argument("--max-megapixels", type=float, default=defaults.max_pixels / 1e6)
    limits.add_argument("--max-faces", type=int, default=defaults.max_faces, help="faces predicted per photo")
    parser.add_argument("--demo-image", help="an image served at /demo.jpg; open /?demo=1 to see it predicted")
    limits.add_argument("--max-decodes", type=int, default=defaults.max_decodes,
                        help="uploads decoded at the same time; the rest wait (bounds memory under load)")
    add_trust_flag(parser)
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    parser.set_defaults(func=_serve)
