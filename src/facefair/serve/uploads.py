"""Uploaded bytes -> a validated RGB image, or an :class:`UploadError` that carries its HTTP status.

Checks run cheapest first: size in bytes, then the header (format, width x height) before any
pixel is decoded, then the decode itself (truncated/corrupt files fail there)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional

from PIL import Image, UnidentifiedImageError

from facefair.data.images import to_rgb
from facefair.serve.config import ServeConfig

#: What browsers and phones produce.  Only these decoders are tried (``Image.open(formats=...)``):
#: every other Pillow plugin is attack surface a photo upload does not need.
FORMATS = ("JPEG", "PNG", "WEBP")
#: Formats Pillow reports for those decoders: MPO is the multi-picture JPEG some cameras write.
_OPENED_AS = FORMATS + ("MPO",)
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def describe_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def _bomb_size(error: Exception) -> str:
    """Pillow says 'Image size (900000000 pixels) exceeds limit ...': keep the size."""
    text = str(error)
    return text[text.find("(") + 1:text.find(")")] if "(" in text and ")" in text else "size over Pillow's limit"


class UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Upload:
    image: Image.Image   # RGB, EXIF orientation applied (as browsers show it); maybe JPEG-draft reduced
    width: int           # full size after orientation: the frame boxes are reported in
    height: int
    format: str


def read_upload(data: bytes, config: ServeConfig, *, draft_size: Optional[int] = None) -> Upload:
    """``draft_size``: let libjpeg decode at a reduced scale that still covers this size, exactly as
    :func:`facefair.data.images.decode` (a face) and :func:`facefair.align.pipeline.load_photo` (a
    photo) do, so an upload gets the pixels the same file gets in ``facefair predict``."""
    if not data:
        raise UploadError(422, "the uploaded file is empty")
    if len(data) > config.max_bytes:
        raise UploadError(413, f"file is larger than the limit of {describe_bytes(config.max_bytes)}")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise UploadError(415, f"not an image this server reads (supported: {', '.join(FORMATS)})") from None
    except Image.DecompressionBombError as error:
        raise UploadError(413, f"image has too many pixels, a decompression bomb ({_bomb_size(error)}; "
                               f"limit {config.max_pixels})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UploadError(422, f"corrupt image header: {error}") from None
    except Exception as error:  # noqa: BLE001 - a decoder bug is the upload's problem, never a 500
        raise UploadError(422, f"unreadable image header ({type(error).__name__})") from None
    image_format = image.format or ""
    if image_format not in _OPENED_AS:
        raise UploadError(415, f"{image.format} images are not supported (supported: {', '.join(FORMATS)})")
    width, height = image.size
    if max(width, height) > config.max_upload_side or width * height > config.max_pixels:
        raise UploadError(413, f"image is {width}x{height}; limits are {config.max_upload_side} px per side and "
                               f"{config.max_pixels} pixels")
    if width == 0 or height == 0:
        raise UploadError(422, "image has no pixels")
    try:
        if image.getexif().get(_EXIF_ORIENTATION, 1) in _TRANSPOSED:
            width, height = height, width
        if draft_size and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        image = to_rgb(image)  # the training decoder's conversion: EXIF, 16-bit, alpha over white
    except Image.DecompressionBombError as error:
        raise UploadError(413, f"image has too many pixels, a decompression bomb ({_bomb_size(error)}; "
                               f"limit {config.max_pixels})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UploadError(422, f"corrupt or truncated image: {error}") from None
    except Exception as error:  # noqa: BLE001
        raise UploadError(422, f"cannot decode image ({type(error).__name__})") from None
    return Upload(image, width, height, image_format)
