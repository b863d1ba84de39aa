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


def _rewrite(path: Path, change) -> None:
    """Rewrite the .npz at ``path`` with ``change`` applied to its arrays (stored key and checksum kept as they are)."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    change(arrays)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def test_swapped_entries_are_damaged_removed_and_recomputed(tmp_path, caplog):
    cache = AnalysisCache(tmp_path)
    first, second = (cache.key(np.full((2, 2, 3), value, np.uint8), "s") for value in (0, 1))
    cache.save(first, {"patches": np.zeros((1, 1, 4), np.float32), "segment_map": np.zeros((2, 2), np.int32)})
    cache.save(second, {"patches": np.ones((1, 1, 4), np.float32), "segment_map": np.ones((2, 2), np.int32)})
    paths = [cache.root / key[:2] / f"{key}.npz" for key in (first, second)]
    contents = [path.read_bytes() for path in paths]
    paths[0].write_bytes(contents[1])
    paths[1].write_bytes(contents[0])
    with caplog.at_level(logging.WARNING, logger="loco_ad.cache"):
        assert cache.load(first, EXPECTED) is None and cache.load(second, EXPECTED) is None
    assert caplog.text.count("another key") == 2 and not any(path.exists() for path in paths)
    assert (cache.hits, cache.misses) == (0, 2)
    cache.save(first, GOOD)
    np.testing.assert_array_equal(cache.load(first, EXPECTED)["patches"], GOOD["patches"])


@pytest.mark.parametrize("damage", ["flipped", "one value", "renamed array", "no checksum"])
def test_changed_arrays_fail_their_checksum(tmp_path, caplog, damage):
    cache = AnalysisCache(tmp_path)
    arrays = {"patches": np.arange(8, dtype=np.float32).reshape(1, 2, 4), "segment_map": np.arange(4, dtype=np.int32).reshape(2, 2)}
    key, path = _entry(cache, arrays)

    def change(stored: dict) -> None:
        if damage == "flipped":  # same shape, same dtype, same values: only their order differs
            stored["segment_map"] = stored["segment_map"][::-1].copy()
        elif damage == "one value":
            stored["patches"][0, 0, 0] += 1
        elif damage == "renamed array":
            stored["other"] = stored.pop("patches")
        else:
            del stored["__checksum__"]

    _rewrite(path, change)
    with caplog.at_level(logging.WARNING, logger="loco_ad.cache"):
        assert cache.load(key) is None
    assert "damaged cache entry" in caplog.text and not path.exists()


def test_stored_identity_is_not_returned(tmp_path):
    cache = AnalysisCache(tmp_path)
    key, _ = _entry(cache, GOOD)
    assert set(cache.load(key)) == set(GOOD)
    with pytest.raises(ValueError, match="cache's own"):
        cache.save(key, {"__key__": np.zeros(1)})


def test_key_depends_on_the_format_version(monkeypatch):
    rgb = np.zeros((2, 2, 3), np.uint8)
    before = AnalysisCache.key(rgb, "s")
    monkeypatch.setattr("loco_ad.cache.FORMAT_VERSION", 1)
    assert AnalysisCache.key(rgb, "s") != before


def test_a_folder_in_an_entry_place_is_one_damaged_entry(tmp_path, caplog):
    cache = AnalysisCache(tmp_path)
    key, path = _entry(cache, GOOD)
    path.unlink()
    (path / "inside").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="loco_ad.cache"):
        assert cache.load(key, EXPECTED) is None
    assert "a folder in its place" in caplog.text and not path.exists()
    cache.save(key, GOOD)
    assert cache.writable and set(cache.load(key, EXPECTED)) == set(GOOD)


def test_a_folder_that_blocks_a_save_does_not_stop_caching(tmp_path, caplog):
    cache = AnalysisCache(tmp_path)
    blocked = cache.key(np.zeros((2, 2, 3), np.uint8), "s")
    path = cache.root / blocked[:2] / f"{blocked}.npz"
    (path / "inside").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="loco_ad.cache"):
        cache.save(blocked, GOOD)  # the rename onto a folder fails: this entry only
    assert cache.writable and "cannot store cache entry" in caplog.text
    other = cache.key(np.ones((2, 2, 3), np.uint8), "s")
    cache.save(other, GOOD)
    assert set(cache.load(other, EXPECTED)) == set(GOOD)
    cache.save(blocked, GOOD)  # the folder was removed with the warning
    assert set(cache.load(blocked, EXPECTED)) == set(GOOD)
    assert not list(tmp_path.rglob("*.tmp"))
