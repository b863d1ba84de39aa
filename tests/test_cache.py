"""The on-disk analysis cache: keys, round trips, damaged and incomplete entries, stale temporary files,
file modes, unwritable folders, atomic writes, no pickle."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

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


def _entry(cache: AnalysisCache, arrays: dict) -> tuple[str, Path]:
    key = cache.key(np.zeros((2, 2, 3), np.uint8), "s")
    cache.save(key, arrays)
    return key, cache.root / key[:2] / f"{key}.npz"


EXPECTED = {"patches": (np.float32, (None, None, 4)), "segment_map": (np.int32, (2, 2))}
GOOD = {"patches": np.zeros((1, 1, 4), np.float32), "segment_map": np.zeros((2, 2), np.int32)}


@pytest.mark.parametrize(
    "damage",
    ["zero bytes", "missing array", "wrong dtype", "wrong shape", "wrong rank"],
)
def test_incomplete_entries_are_removed_with_a_warning(tmp_path, caplog, damage):
    cache = AnalysisCache(tmp_path)
    arrays = dict(GOOD)
    if damage == "missing array":
        del arrays["segment_map"]
    elif damage == "wrong dtype":
        arrays["patches"] = arrays["patches"].astype(np.float64)
    elif damage == "wrong shape":
        arrays["segment_map"] = np.zeros((3, 2), np.int32)
    elif damage == "wrong rank":
        arrays["patches"] = np.zeros((1, 4), np.float32)
    key, path = _entry(cache, arrays)
    if damage == "zero bytes":
        path.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="loco_ad.cache"):
        assert cache.load(key, EXPECTED) is None
    assert not path.exists() and cache.misses == 1
    assert "damaged cache entry" in caplog.text
    cache.save(key, GOOD)
    assert set(cache.load(key, EXPECTED)) == set(GOOD)


def test_stale_temporary_files_are_removed_when_the_cache_opens(tmp_path):
    folder = tmp_path / "ab"
    folder.mkdir()
    stale, fresh = folder / ".x.npz.1.tmp", folder / ".y.npz.2.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    cache = AnalysisCache(tmp_path)
    assert stale.exists()  # nothing happens before the cache is used
    assert cache.load("ab" + "0" * 62) is None
    assert not stale.exists() and fresh.exists()  # a fresh one may belong to a run still writing


def test_entries_get_the_mode_the_umask_gives(tmp_path):
    previous = os.umask(0o022)
    try:
        _, path = _entry(AnalysisCache(tmp_path), GOOD)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_read_only_cache_is_used_without_storing(tmp_path, make_read_only, caplog):
    cache = AnalysisCache(tmp_path / "cache")
    key, path = _entry(cache, GOOD)
    other = AnalysisCache.key(np.ones((2, 2, 3), np.uint8), "s")
    make_read_only(tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="loco_ad.cache"):
        cache = AnalysisCache(tmp_path / "cache")
        assert set(cache.load(key, EXPECTED)) == set(GOOD)  # existing entries still serve
        assert cache.load(other) is None
        cache.save(other, GOOD)  # no error: the run goes on
    assert cache.writable is False and "cannot be written" in caplog.text
    assert list((tmp_path / "cache").rglob("*.npz")) == [path]


def test_cache_under_a_file_warns_and_stores_nothing(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    cache = AnalysisCache(tmp_path / "file" / "cache")
    with caplog.at_level(logging.WARNING, logger="loco_ad.cache"):
        key, _ = _entry(cache, GOOD)
        assert cache.load(key) is None
    assert cache.writable is False and "cannot be written" in caplog.text


def test_key_depends_on_dtype():
    assert AnalysisCache.key(np.zeros((2, 2, 3), np.uint8), "s") != AnalysisCache.key(np.zeros((2, 2, 3), np.int8), "s")
