"""Batches of uint8 face images and the tensor augmentation applied to them.

Two sources give the same thing — a uint8 NHWC batch plus the positions of its rows in the
split — so the training loop does not care whether pixels come from the decoded cache (no JPEG
work at all) or straight from files (DataLoader workers decoding).  Augmentation then runs on
the batch as tensors, on the GPU when there is one.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from facefair.data.augment_config import AugmentConfig
from facefair.data.images import try_decode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def epoch_order(n: int, epoch: int, seed: int, shuffle: bool, weights: Optional[np.ndarray]) -> np.ndarray:
    """Row order for one epoch, a pure function of (seed, epoch) so a resumed run sees exactly the
    batches an uninterrupted one would.  ``weights`` draws with replacement (balanced sampling)."""
    if weights is not None:
        rng = np.random.default_rng([seed, epoch, 1])
        return rng.choice(n, size=n, replace=True, p=weights / weights.sum())
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


class ArrayBatches:
    """Batches gathered from an in-memory or memory-mapped uint8 array (the decoded cache)."""

    def __init__(self, images: np.ndarray, rows: np.ndarray, batch_size: int):
        self.images, self.rows, self.batch_size = images, np.asarray(rows), batch_size

    def __len__(self) -> int:
        return len(self.rows)

    def iterate(self, order: np.ndarray, drop_last: bool = False) -> Iterator[tuple[torch.Tensor, np.ndarray, list[str]]]:
        stop = len(order) - (len(order) % self.batch_size if drop_last and len(order) >= self.batch_size else 0)
        for start in range(0, stop, self.batch_size):
            positions = order[start:start + self.batch_size]
            rows = self.rows[positions]
            # Sorted reads are sequential in the memory map; unsort afterwards to keep the order.
            sort = np.argsort(rows, kind="stable")
            batch = np.empty((len(rows), *self.images.shape[1:]), dtype=np.uint8)
            batch[sort] = self.images[rows[sort]]
            yield torch.from_numpy(batch), positions, []


class _FileDataset(Dataset):
    def __init__(self, paths: Sequence[str], size: int):
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int):
        array, error = try_decode(self.paths[position], self.size)
        return position, array, error


def _collate(items):
    good = [(p, a) for p, a, _ in items if a is not None]
    errors = [e for _, a, e in items if a is None]
    if not good:
        return torch.empty(0, dtype=torch.uint8), np.empty(0, dtype=np.int64), errors
    positions = np.array([p for p, _ in good], dtype=np.int64)
    return torch.from_numpy(np.stack([a for _, a in good])), positions, errors


class FileBatches:
    """Batches decoded from image files by DataLoader workers; unreadable files are dropped from
    the batch and returned by name so the caller can count and report them."""

    def __init__(self, paths: Sequence[str], size: int, batch_size: int, workers: int, pin_memory: bool = False):
        self.dataset = _FileDataset(paths, size)
        self.batch_size, self.workers, self.pin_memory = batch_size, workers, pin_memory

    def __len__(self) -> int:
        return len(self.dataset)

    def iterate(self, order: np.ndarray, drop_last: bool = False):
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=order.tolist(), num_workers=self.workers,
                            collate_fn=_collate, pin_memory=self.pin_memory, drop_last=drop_last,
                            persistent_workers=False, prefetch_factor=4 if self.workers else None)
        yield from loader


def to_float(batch: torch.Tensor, device: torch.device, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW in channels_last layout (a free permute of NHWC)."""
    x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).contiguous(memory_format=torch.channels_last)


def _chosen(n: int, probability: float, generator: torch.Generator) -> list[int]:
    if probability <= 0:
        return []
    return torch.nonzero(torch.rand(n, generator=generator) < probability).flatten().tolist()


def _jpeg(images: torch.Tensor, qualities: Sequence[int]) -> torch.Tensor:
    """(K, 3, H, W) images in [0, 1], each through a JPEG encode/decode at its quality (Pillow's
    codec, the one the training JPEGs were decoded with; torchvision's is deprecated).  One copy
    to the host and one back for the whole batch: per image, each copy waits for the GPU."""
    import io

    from PIL import Image

    pixels = (images * 255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded_all = np.empty_like(pixels)
    for k, quality in enumerate(qualities):
        buffer = io.BytesIO()
        Image.fromarray(pixels[k]).save(buffer, format="JPEG", quality=quality)
        with Image.open(buffer) as decoded:
            decoded_all[k] = np.asarray(decoded.convert("RGB"))
    return torch.from_numpy(decoded_all).permute(0, 3, 1, 2).to(images.device, images.dtype) / 255


_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate each image's chroma by ``angle`` radians in YIQ (luma kept): one batched 3x3 colour
    matrix instead of a per-image HSV round trip (4x slower over a 128-image batch)."""
    to_yiq = torch.tensor(_RGB_TO_YIQ, device=x.device, dtype=x.dtype)
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                            torch.stack([zero, sin, cos], 1)], 1)
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq            # (N, 3, 3), RGB -> RGB
    return torch.einsum("nij,njhw->nihw", matrix, x).clamp_(0, 1)


def _quality_changes(x: torch.Tensor, generator: torch.Generator, config: AugmentConfig) -> torch.Tensor:
    """Saturation, colour cast, gamma, hue, grayscale, sharpening, blur, low resolution and JPEG on
    a (N, 3, H, W) batch in [0, 1]: torchvision's kernels, each image with its own draw (from the
    CPU generator, so runs repeat).  Each change draws only when it is on, so a config without it
    keeps its random stream."""
    from torchvision.transforms.v2 import functional as TF

    n, side = x.shape[0], x.shape[-1]
    if config.saturation > 0:
        factor = (torch.rand(n, generator=generator) * 2 - 1) * config.saturation + 1
        gray = TF.rgb_to_grayscale(x, num_output_channels=3)
        x = (gray + factor.to(x.device).view(n, 1, 1, 1) * (x - gray)).clamp_(0, 1)
    if config.white_balance > 0:
        gains = (torch.rand(n, 3, generator=generator) * 2 - 1) * config.white_balance + 1
        # Keep the mean gain at 1: a cast, not a brightness change (brightness has its own jitter).
        gains = gains / gains.mean(dim=1, keepdim=True)
        x = (x * gains.to(x.device).view(n, 3, 1, 1)).clamp_(0, 1)
    if config.gamma > 0:
        top = math.log1p(config.gamma)
        gamma = torch.exp((torch.rand(n, generator=generator) * 2 - 1) * top)
        x = x.clamp(min=1e-6).pow(gamma.to(x.device).view(n, 1, 1, 1))
    if config.hue > 0:
        angle = (torch.rand(n, generator=generator) * 2 - 1) * config.hue * 2 * math.pi
        x = _rotate_hue(x, angle.to(x.device))
    rows = _chosen(n, config.grayscale, generator)
    if rows:
        x[rows] = TF.rgb_to_grayscale(x[rows], num_output_channels=3)
    for i in _chosen(n, config.sharpen, generator):
        low, high = config.sharpen_amount
        amount = float(torch.empty(1).uniform_(low, high, generator=generator))
        sigma = max(0.5, 0.01 * side)
        kernel = 2 * math.ceil(3 * sigma) + 1
        smooth = TF.gaussian_blur(x[i], [kernel, kernel], [sigma, sigma])
        x[i] = (x[i] + amount * (x[i] - smooth)).clamp_(0, 1)
    for i in _chosen(n, config.blur, generator):
        low, high = config.blur_sigma
        sigma = float(torch.empty(1).uniform_(low, high, generator=generator)) / 100 * side
        kernel = 2 * math.ceil(3 * sigma) + 1
        x[i] = TF.gaussian_blur(x[i], [kernel, kernel], [sigma, sigma])
    for i in _chosen(n, config.low_resolution, generator):
        low, high = config.low_resolution_scale
        small = max(4, round(side * float(torch.empty(1).uniform_(low, high, generator=generator))))
        shrunk = F.interpolate(x[i:i + 1], size=(small, small), mode="area")
        x[i] = F.interpolate(shrunk, size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
    rows = _chosen(n, config.jpeg, generator)
    if rows:
        low, high = config.jpeg_quality
        qualities = [int(torch.randint(low, high + 1, (1,), generator=generator)) for _ in rows]
        x[rows] = _jpeg(x[rows], qualities)
    return x


def augment(batch: torch.Tensor, device: torch.device, generator: torch.Generator, config: AugmentConfig) -> torch.Tensor:
    """Random zoom/shift/rotation/flip (one affine warp) and brightness/contrast, batched on ``device``.
    Parameters are drawn on the CPU from ``generator`` so runs are reproducible on any device."""
    n = batch.shape[0]
    x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)

    def uniform(low, high):
        return torch.rand(n, generator=generator) * (high - low) + low

    scale = uniform(*config.scale)
    wide = torch.zeros(n, dtype=torch.bool)
    if config.zoom_out:  # drawn only when on, so runs without it keep their random stream
        wide = torch.rand(n, generator=generator) < config.zoom_out
        scale = torch.where(wide, uniform(*config.zoom_out_scale), scale)
    angle = uniform(-config.rotate_degrees, config.rotate_degrees) * math.pi / 180
    shift_x, shift_y = uniform(-config.shift, config.shift) * 2, uniform(-config.shift, config.shift) * 2
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if config.flip else torch.ones(n)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift_x], 1), torch.stack([sin * flip, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta.to(device), list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if wide.any():
        # Mirrored margins would tile a wide frame with copies of the face; edge pixels give one face
        # in a plain surround, as `facefair align --border` pads a tight crop before detection.
        rows = wide.to(device)
        warped[rows] = F.grid_sample(x[rows], grid[rows], mode="bilinear", padding_mode="border", align_corners=False)
    x = warped
    brightness = uniform(1 - config.brightness, 1 + config.brightness).to(device).view(n, 1, 1, 1)
    contrast = uniform(1 - config.contrast, 1 + config.contrast).to(device).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * brightness
    x = _quality_changes(x.clamp_(0, 1), generator, config)
    mean_t = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).contiguous(memory_format=torch.channels_last)
