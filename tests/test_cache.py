import os
import shutil

import numpy as np
import pytest
import torch

from facefair.data.batches import ArrayBatches, AugmentConfig, augment, epoch_order
from facefair.data.cache import build_cache
from facefair.data.images import decode


def test_cache_matches_decoding_and_is_reused(utk_sample, tmp_path):
    paths = sorted(str(p) for p in utk_sample.iterdir())[:20]
    cache = build_cache(paths, 64, tmp_path, workers=1, progress=False)
    assert cache.images.shape == (20, 64, 64, 3) and not cache.bad
    i = cache.paths.index(paths[3])
    assert np.array_equal(cache.images[i], decode(paths[3], 64))
    again = build_cache(paths, 64, tmp_path, workers=1, progress=False)
    assert again.directory == cache.directory
    assert isinstance(again.images, np.memmap)


def test_changed_source_invalidates_cache(utk_sample, tmp_path):
    folder = tmp_path / "src"
    shutil.copytree(utk_sample, folder)
    paths = sorted(str(p) for p in folder.iterdir())[:10]
    first = build_cache(paths, 32, tmp_path / "c", workers=1, progress=False)
    os.utime(paths[0], ns=(1, 1))  # a replaced file
    second = build_cache(paths, 32, tmp_path / "c", workers=1, progress=False)
    assert second.directory != first.directory
    third = build_cache(paths[:-1], 32, tmp_path / "c", workers=1, progress=False)  # a removed file
    assert third.directory not in (first.directory, second.directory)


def test_bad_files_are_recorded_with_their_reason(utk_sample, tmp_path):
    good = sorted(utk_sample.iterdir())[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:200])
    cache = build_cache([str(good), str(broken), str(tmp_path / "gone.jpg")], 32, tmp_path / "c", workers=2,
                        progress=False)
    assert set(cache.bad) == {str(broken), str(tmp_path / "gone.jpg")}
    assert "not found" in cache.bad[str(tmp_path / "gone.jpg")]
    assert list(cache.indices([str(good), str(broken)])) == [cache.paths.index(str(good)), -1]


def test_batches_follow_the_order_and_epoch_order_is_reproducible():
    images = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    batches = ArrayBatches(images, np.array([9, 8, 7, 6, 5]), batch_size=2)
    order = np.array([4, 0, 2, 1, 3])
    got = [(b.numpy(), p) for b, p, _ in batches.iterate(order)]
    assert [list(p) for _, p in got] == [[4, 0], [2, 1], [3]]
    assert np.array_equal(got[0][0][0], images[5]) and np.array_equal(got[0][0][1], images[9])
    assert np.array_equal(epoch_order(50, 3, 7, True, None), epoch_order(50, 3, 7, True, None))
    assert not np.array_equal(epoch_order(50, 3, 7, True, None), epoch_order(50, 4, 7, True, None))
    weights = np.array([1.0] * 45 + [9.0] * 5)
    drawn = epoch_order(50, 0, 0, True, weights)
    assert (drawn >= 45).mean() > 0.3  # the up-weighted rows are drawn far above their 10% share


def test_augment_keeps_shape_and_is_seeded():
    batch = torch.randint(0, 255, (4, 32, 32, 3), dtype=torch.uint8)
    a = augment(batch, torch.device("cpu"), torch.Generator().manual_seed(1), AugmentConfig())
    b = augment(batch, torch.device("cpu"), torch.Generator().manual_seed(1), AugmentConfig())
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b)
    assert a.is_contiguous(memory_format=torch.channels_last)


def _faces(n: int = 8, side: int = 64) -> torch.Tensor:
    """Smooth images with detail (a face-like gradient plus fine stripes), uint8 NHWC."""
    y, x = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    base = torch.stack([x, y, (x + y) / 2], -1) * 180 + 30 * torch.sin(x * 60).unsqueeze(-1)
    return base.clamp(0, 255).to(torch.uint8).expand(n, side, side, 3).contiguous()


def _only(**changes) -> AugmentConfig:
    """No geometry or colour jitter: the named quality change alone."""
    return AugmentConfig(scale=(1.0, 1.0), shift=0.0, rotate_degrees=0.0, flip=False, brightness=0.0, contrast=0.0,
                         **changes)


def _pixels(x: torch.Tensor) -> torch.Tensor:
    from facefair.data.batches import IMAGENET_MEAN, IMAGENET_STD
    return x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)


def _detail(x: torch.Tensor) -> float:
    """High-frequency energy: what blur, low resolution and JPEG take away."""
    return float((x[..., 1:] - x[..., :-1]).abs().mean())


def test_quality_augmentations_each_do_their_one_change():
    batch = _faces()
    run = lambda config, seed=0: _pixels(augment(batch, torch.device("cpu"), torch.Generator().manual_seed(seed), config))
    plain = run(_only())
    assert _detail(plain) > 0.02
    gray = run(_only(grayscale=1.0))
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-5) and torch.allclose(gray[:, 1], gray[:, 2], atol=1e-5)
    assert not torch.allclose(plain[:, 0], plain[:, 1], atol=1e-2)
    for change in ({"blur": 1.0, "blur_sigma": (2.5, 2.5)}, {"low_resolution": 1.0}):
        changed = run(_only(**change))
        assert _detail(changed) < 0.8 * _detail(plain), change
        assert (changed - plain).abs().mean() < 0.1, change  # the same picture, degraded
    # JPEG adds block edges rather than removing detail: the lower the quality, the further off.
    error = {q: float((run(_only(jpeg=1.0, jpeg_quality=(q, q))) - plain).abs().mean()) for q in (5, 50, 95)}
    assert 0.002 < error[95] < error[50] < error[5] < 0.1, error
    desaturated = run(_only(saturation=0.9))
    spread = lambda x: float((x - x.mean(1, keepdim=True)).abs().mean())
    assert spread(desaturated) != pytest.approx(spread(plain), rel=0.05)
    # Reproducible per seed, different across seeds; probabilities pick a share of the batch.
    strong = _only(saturation=0.3, grayscale=0.5, blur=0.5, low_resolution=0.5, jpeg=0.5)
    assert torch.equal(run(strong, 3), run(strong, 3)) and not torch.equal(run(strong, 3), run(strong, 4))
    gray_rows = (run(_only(grayscale=0.5), 5)[:, 0] - run(_only(grayscale=0.5), 5)[:, 1]).abs().amax((1, 2)) < 1e-5
    assert 0 < int(gray_rows.sum()) < len(batch)


def test_colour_and_sharpen_augmentations_each_do_their_one_change():
    """White balance casts colour without changing brightness; gamma bends tones (mid-grey moves,
    black and white stay); hue rotates colours; sharpening adds detail where blur removes it; all
    seeded, and off by default so configs without them keep their random stream."""
    batch = _faces()
    run = lambda config, seed=0: _pixels(augment(batch, torch.device("cpu"), torch.Generator().manual_seed(seed), config))
    plain = run(_only())
    cast = run(_only(white_balance=0.3))
    ratio = cast.mean((2, 3)) / plain.mean((2, 3))
    assert (ratio.amax(1) - ratio.amin(1)).min() > 0.02          # channels scaled differently
    assert (cast.mean((1, 2, 3)) - plain.mean((1, 2, 3))).abs().max() < 0.05
    toned = run(_only(gamma=0.5))
    assert (toned - plain).abs().mean() > 0.01
    assert torch.allclose(run(_only(gamma=0.5))[plain < 0.002], plain[plain < 0.002], atol=0.01)
    hued = run(_only(hue=0.3))
    gray = lambda x: 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert (hued - plain).abs().mean() > 0.02 and (gray(hued) - gray(plain)).abs().mean() < 0.1
    sharp = run(_only(sharpen=1.0, sharpen_amount=(2.0, 2.0)))
    assert _detail(sharp) > 1.2 * _detail(plain) and (sharp - plain).abs().mean() < 0.1
    both = _only(white_balance=0.2, gamma=0.3, hue=0.05, sharpen=0.5)
    assert torch.equal(run(both, 3), run(both, 3)) and not torch.equal(run(both, 3), run(both, 4))
    assert torch.equal(run(AugmentConfig(), 7), run(AugmentConfig(white_balance=0, gamma=0, hue=0, sharpen=0), 7))


def test_batched_jpeg_gives_each_image_what_pillow_gives_it_alone():
    """The JPEG change runs a whole batch's chosen images in one host round trip; each image must
    still come out exactly as Pillow encodes and decodes it on its own, at its own quality."""
    import io

    from PIL import Image

    from facefair.data.batches import _jpeg

    images = _pixels(augment(_faces(), torch.device("cpu"), torch.Generator().manual_seed(0), _only()))[:3]
    qualities = [5, 60, 95]
    got = _jpeg(images.clone(), qualities)
    for image, quality, out in zip(images, qualities, got):
        buffer = io.BytesIO()
        pixels = (image * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        expected = torch.from_numpy(np.asarray(Image.open(buffer).convert("RGB")).copy()).permute(2, 0, 1) / 255
        assert torch.equal(out, expected), quality


def test_zoom_out_shrinks_the_face_into_a_wider_frame_on_its_share_of_rows():
    """A bright square filling the middle third: zoomed out 2x it covers a quarter of the area it
    did (the margin is edge pixels: dark here, not mirrored squares); with probability 0.5 some
    rows are wide and some are not; off, the random stream is unchanged."""
    batch = torch.zeros(16, 48, 48, 3, dtype=torch.uint8)
    batch[:, 16:32, 16:32] = 255
    run = lambda config, seed=0: _pixels(augment(batch, torch.device("cpu"), torch.Generator().manual_seed(seed),
                                                 config))
    bright = lambda x: (x.mean(1) > 0.5).float().mean((1, 2))
    plain = bright(run(_only()))
    wide = bright(run(_only(zoom_out=1.0, zoom_out_scale=(2.0, 2.0))))
    # one square a quarter of its area (edge padding), not the mirrored copies reflection would add
    assert torch.allclose(wide, plain / 4, atol=0.01)
    mixed = bright(run(_only(zoom_out=0.5, zoom_out_scale=(2.0, 2.0)), 3))
    assert 0 < int((mixed < 0.6 * plain).sum()) < len(batch)
    assert torch.equal(run(AugmentConfig(), 7), run(AugmentConfig(zoom_out=0.0), 7))


@pytest.mark.parametrize("values, message", [
    ({"grayscale": 1.5}, "augment.grayscale is a probability"),
    ({"jpeg_quality": [0, 50]}, "augment.jpeg_quality"),
    ({"low_resolution_scale": [0.5, 1.5]}, "augment.low_resolution_scale"),
    ({"zoom_out": 2}, "augment.zoom_out is a probability"),
    ({"sharpen": -0.1}, "augment.sharpen is a probability"),
    ({"gamma": 1.0}, "augment.gamma needs"),
    ({"hue": 0.7}, "augment.hue is a share"),
    ({"sharpen_amount": [2.0, 1.0]}, "augment.sharpen_amount"),
    ({"zoom_out_scale": [0.8, 2.0]}, "augment.zoom_out_scale"),
])
def test_out_of_range_quality_settings_are_errors(values, message):
    from facefair.config import RunConfig
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict({"augment": values})
