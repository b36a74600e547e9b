"""Decoding face images to fixed-size uint8 arrays, with bad files reported instead of raised."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: More pixels than this in a header is a decompression bomb, not a face: Pillow's own threshold
#: (it only warns between 1x and 2x of it and raises above), applied before any pixel is decoded.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
_WIDE_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class BadImage(Exception):
    """An image that cannot be used; the message names the file."""


def check_size(image: Image.Image, max_pixels: int = MAX_PIXELS) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise BadImage(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise BadImage(f"decompression bomb: the header says {width}x{height} = {width * height} pixels, "
                       f"over the limit of {max_pixels}")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded frame -> RGB as a viewer shows it: EXIF orientation applied, 16-bit scaled (not
    clipped) to 8, transparency over white, palette/CMYK/grayscale converted."""
    image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_INTEGER_MODES:
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values / peak * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":  # float TIFFs: 0..1 or 0..255
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.max(initial=0) <= 1 else 1.0
        image = Image.fromarray(np.clip(values * scale + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == "RGB" else image.convert("RGB")


def decode(path: str | Path, size: int) -> np.ndarray:
    """RGB uint8 array of shape (size, size, 3).  JPEG draft mode lets libjpeg decode at a reduced
    scale first, which is most of the speed-up on small training resolutions.

    Whatever is wrong with the file (missing, empty, truncated, not an image, a decompression
    bomb, a mode Pillow cannot convert) is a :class:`BadImage` naming it, never another exception:
    one bad file in a folder must not cost the other files their results."""
    try:
        with Image.open(path) as image:
            check_size(image)
            image.draft("RGB", (size, size))
            return resize_face(to_rgb(image), size)
    except BadImage as error:
        raise BadImage(f"{path}: {error}") from None
    except FileNotFoundError as error:
        if Path(path).is_symlink():
            raise BadImage(f"{path}: broken symbolic link (its target {os.readlink(path)} does not exist)") from None
        raise BadImage(f"{path}: file not found") from error
    except Image.DecompressionBombError as error:
        raise BadImage(f"{path}: decompression bomb ({error})") from None
    except UnidentifiedImageError:
        empty = Path(path).is_file() and Path(path).stat().st_size == 0
        raise BadImage(f"{path}: unreadable: {'empty file (0 bytes)' if empty else 'not an image Pillow can read'}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadImage(f"{path}: unreadable or truncated image ({error})") from None
    except Exception as error:  # noqa: BLE001 - a decoder bug on one file must not end the run
        raise BadImage(f"{path}: unreadable: cannot decode ({type(error).__name__}: {error})") from None


#: A face whose shorter side is under this share of the model's input size is upscaled more than
#: 2x to reach it: far smaller than the training chips, so its prediction is mostly guesswork
#: (a 1x1 upload still got "Male 0.70").  It is predicted, and flagged.
SMALL_FACE_SHARE = 0.5


def small_face_note(width: float, height: float, model_size: int) -> Optional[str]:
    """A note for a face of ``width`` x ``height`` pixels far smaller than the ``model_size`` chips the
    model was trained on, else None."""
    if min(width, height) >= SMALL_FACE_SHARE * model_size:
        return None
    return (f"small face: {width:.0f}x{height:.0f} px, upscaled more than 2x to the model's "
            f"{model_size}x{model_size} input: the prediction is unreliable")


def image_size(path: str | Path) -> Optional[tuple[int, int]]:
    """Width and height from the file's header (no pixels decoded); None if the header cannot be
    read (the decoder reports why)."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: BLE001 - unreadable files are reported by decode, with the reason
        return None


def resize_face(image: "Image.Image | np.ndarray", size: int) -> np.ndarray:
    """A face (RGB image or uint8 HWC array) -> a writable uint8 (size, size, 3) array: the one resize
    every path to the model uses (training files, aligned chips, uploads), so a face predicts the
    same whether it was saved first or not."""
    if isinstance(image, np.ndarray):
        if image.shape[0] == size and image.shape[1] == size:
            return np.array(image, dtype=np.uint8)
        image = Image.fromarray(image)
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    return np.array(image, dtype=np.uint8)  # a copy: torch.from_numpy warns on read-only arrays


def try_decode(path: str | Path, size: int) -> tuple[Optional[np.ndarray], Optional[str]]:
    try:
        return decode(path, size), None
    except BadImage as error:
        return None, str(error)


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, h, w, 3) -> (N, size, size, 3), bilinear and antialiased when shrinking."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    import torch
    import torch.nn.functional as F
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()
