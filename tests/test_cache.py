import os
import shutil

import numpy as np
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
