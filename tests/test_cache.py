"""The on-disk analysis cache: keys, round trips, damaged entries, atomic writes, no pickle."""

from __future__ import annotations

import numpy as np

from loco_ad.cache import AnalysisCache


def test_round_trip_and_counts(tmp_path):
    cache = AnalysisCache(tmp_path)
    rgb = np.zeros((4, 6, 3), np.uint8)
    key = cache.key(rgb, "settings")
    assert cache.load(key) is None
    arrays = {"patches": np.arange(12, dtype=np.float32).reshape(2, 3, 2), "segment_map": np.eye(4, dtype=np.int32)}
    cache.save(key, arrays)
    loaded = cache.load(key)
    assert set(loaded) == set(arrays)
    for name in arrays:
        np.testing.assert_array_equal(loaded[name], arrays[name])
        assert loaded[name].dtype == arrays[name].dtype
    assert (cache.hits, cache.misses) == (1, 1)
    assert not list(tmp_path.rglob("*.tmp"))


def test_key_depends_on_pixels_shape_and_settings():
    rgb = np.zeros((4, 6, 3), np.uint8)
    other = rgb.copy()
    other[0, 0, 0] = 1
    keys = {
        AnalysisCache.key(rgb, "a"),
        AnalysisCache.key(other, "a"),
        AnalysisCache.key(rgb, "b"),
        AnalysisCache.key(rgb.reshape(6, 4, 3), "a"),
    }
    assert len(keys) == 4
    assert AnalysisCache.key(rgb.copy(), "a") == AnalysisCache.key(rgb, "a")


def test_damaged_entry_is_a_miss_and_removed(tmp_path):
    cache = AnalysisCache(tmp_path)
    key = cache.key(np.zeros((2, 2, 3), np.uint8), "s")
    cache.save(key, {"x": np.ones(3)})
    path = next(tmp_path.rglob("*.npz"))
    path.write_bytes(path.read_bytes()[:20])  # a truncated file, as a crash mid-write without rename would not leave
    assert cache.load(key) is None
    assert not path.exists()


def test_pickled_objects_are_refused(tmp_path):
    cache = AnalysisCache(tmp_path)
    key = cache.key(np.zeros((2, 2, 3), np.uint8), "s")
    cache.save(key, {"x": np.array([{"a": 1}], dtype=object)})
    assert cache.load(key) is None
