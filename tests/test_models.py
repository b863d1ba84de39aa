"""Weight resolution of loco_ad.models, with tiny models and no network."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import huggingface_hub
import pytest
import torch
from transformers import Dinov2Model

from loco_ad import models
from loco_ad.errors import ConfigError, ModelWeightsError
from tests.tiny_models import tiny_dinov2, tiny_sam

SAM_FILE = models.SAM_CHECKPOINTS["vit_b"]


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Empty caches, no LOCO_AD_WEIGHTS, the tiny SAM standing in for ViT-B, downloads forbidden unless mocked."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # read at import
    monkeypatch.delenv(models.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setitem(models.sam_model_registry, "vit_b", lambda checkpoint=None: tiny_sam(seed=1))

    def no_download(*args, **kwargs):
        raise AssertionError("tests must not download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path


def save_tiny_sam(path: Path) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = tiny_sam(seed=0).state_dict()
    torch.save(state, path)
    return state


def assert_same_weights(model: torch.nn.Module, state: dict) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def spy_on_from_pretrained(monkeypatch) -> list[tuple[str, dict]]:
    """Record every ``Dinov2Model.from_pretrained(source, **kwargs)`` call, then let the real one run (offline here)."""
    calls: list[tuple[str, dict]] = []
    real = Dinov2Model.from_pretrained.__func__

    def spy(cls, source, **kwargs):
        calls.append((source, kwargs))
        return real(cls, source, **kwargs)

    monkeypatch.setattr(Dinov2Model, "from_pretrained", classmethod(spy))
    return calls


def test_sam_from_weights_dir(isolated):
    state = save_tiny_sam(isolated / "weights" / SAM_FILE)
    model = models.load_sam("vit_b", weights_dir=isolated / "weights")
    assert_same_weights(model, state)
    assert not model.training


def test_sam_from_env_weights_dir(isolated, monkeypatch):
    state = save_tiny_sam(isolated / "env_weights" / SAM_FILE)
    monkeypatch.setenv(models.WEIGHTS_ENV, str(isolated / "env_weights"))
    assert_same_weights(models.load_sam("vit_b"), state)


def test_sam_weights_dir_before_cache(isolated):
    state = save_tiny_sam(isolated / "weights" / SAM_FILE)
    torch.save(tiny_sam(seed=2).state_dict(), _cache_path(isolated))
    assert_same_weights(models.load_sam("vit_b", weights_dir=isolated / "weights"), state)


def _cache_path(root: Path) -> Path:
    path = root / "torch" / "hub" / "checkpoints" / SAM_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_sam_from_torch_hub_cache(isolated):
    state = save_tiny_sam(_cache_path(isolated))
    assert_same_weights(models.load_sam("vit_b", weights_dir=isolated / "empty"), state)


def test_sam_downloads_official_checkpoint_into_cache(isolated, monkeypatch):
    calls = []

    def fake_download(url, dst, progress=True):
        calls.append((url, dst))
        save_tiny_sam(Path(dst))

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = models.load_sam("vit_b")
    assert calls == [(f"https://dl.fbaipublicfiles.com/segment_anything/{SAM_FILE}", str(_cache_path(isolated)))]
    assert_same_weights(model, torch.load(_cache_path(isolated), weights_only=True))


def test_sam_offline_and_missing_is_a_clear_error(isolated, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelWeightsError) as info:
        models.load_sam("vit_b", weights_dir=isolated / "weights")
    message = str(info.value)
    assert SAM_FILE in message and "--weights-dir" in message and models.WEIGHTS_ENV in message
    assert str(isolated / "weights" / SAM_FILE) in message


def test_sam_failed_download_is_a_clear_error(isolated, monkeypatch):
    def failing_download(url, dst, progress=True):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", failing_download)
    with pytest.raises(ModelWeightsError, match="network unreachable"):
        models.load_sam("vit_b")


def test_sam_corrupt_checkpoint_is_a_clear_error(isolated):
    path = isolated / "weights" / SAM_FILE
    path.parent.mkdir()
    torch.save({"not": torch.zeros(1)}, path)
    with pytest.raises(ModelWeightsError, match="not a valid SAM"):
        models.load_sam("vit_b", weights_dir=path.parent)


def test_unknown_sam_model(isolated):
    with pytest.raises(ConfigError, match="vit_h"):
        models.load_sam("vit_x")


def test_dinov2_from_weights_dir(isolated, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    saved = tiny_dinov2(seed=3)
    saved.save_pretrained(isolated / "weights" / "dinov2-small")
    model = models.load_dinov2("facebook/dinov2-small", weights_dir=isolated / "weights")
    assert isinstance(model, Dinov2Model) and not model.training
    assert_same_weights(model, saved.state_dict())


def test_dinov2_offline_and_missing_is_a_clear_error(isolated, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = spy_on_from_pretrained(monkeypatch)
    with pytest.raises(ModelWeightsError) as info:
        models.load_dinov2("loco-ad-test/dinov2-absent", weights_dir=isolated / "weights")
    message = str(info.value)
    assert "loco-ad-test/dinov2-absent" in message and "dinov2-absent" in message
    assert "--weights-dir" in message and models.WEIGHTS_ENV in message and "HF_HUB_OFFLINE" in message
    assert calls == [("loco-ad-test/dinov2-absent", {"use_safetensors": True, "local_files_only": True})]


def test_dinov2_online_may_download(isolated, monkeypatch):
    calls = []

    def fake(cls, source, **kwargs):
        calls.append((source, kwargs))
        return tiny_dinov2()

    monkeypatch.setattr(Dinov2Model, "from_pretrained", classmethod(fake))
    models.load_dinov2("facebook/dinov2-small")
    assert calls == [("facebook/dinov2-small", {"use_safetensors": True, "local_files_only": False})]


@pytest.mark.parametrize("model_id", sorted(models.DINOV2_CONFIGS))
def test_dinov2_configs_match_published_sizes(model_id):
    params = {
        "facebook/dinov2-small": 22.1e6,
        "facebook/dinov2-base": 86.6e6,
        "facebook/dinov2-large": 304.4e6,
        "facebook/dinov2-giant": 1136.5e6,
    }[model_id]
    config = models.Dinov2Config(**models.DINOV2_CONFIGS[model_id])
    with torch.device("meta"):
        model = Dinov2Model(config)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(params, rel=0.01)


def test_build_dinov2_unknown_model():
    with pytest.raises(ConfigError):
        models.build_dinov2("facebook/dinov2-huge")


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert models.resolve_device("auto") == expected
    assert models.resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cpu"):
            models.resolve_device("cuda")


def _forbid_loading(monkeypatch) -> None:
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a weights id must not load the weights"))
    monkeypatch.setattr(Dinov2Model, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("no loading")))


def _touch(path: Path, seconds: int) -> None:
    os.utime(path, (seconds, seconds))


def test_sam_weights_id_names_the_file_without_loading_it(isolated, monkeypatch):
    path = isolated / "weights" / SAM_FILE
    save_tiny_sam(path)
    _touch(path, 1_000_000)
    _forbid_loading(monkeypatch)
    first = models.sam_weights_id("vit_b", isolated / "weights")
    assert first.startswith(SAM_FILE) and str(path.stat().st_size) in first
    assert models.sam_weights_id("vit_b", isolated / "weights") == first
    _touch(path, 2_000_000)  # the file replaced, say by another checkpoint of the same size
    assert models.sam_weights_id("vit_b", isolated / "weights") != first


def test_sam_weights_id_offline_and_missing_is_a_clear_error(isolated, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelWeightsError, match=SAM_FILE):
        models.sam_weights_id("vit_b", isolated / "weights")


def test_dinov2_weights_id_from_weights_dir_without_loading(isolated, monkeypatch):
    folder = isolated / "weights" / "dinov2-small"
    tiny_dinov2(seed=3).save_pretrained(folder)
    _forbid_loading(monkeypatch)
    first = models.dinov2_weights_id("facebook/dinov2-small", isolated / "weights")
    assert "config.json:" in first and "model.safetensors:" in first
    tiny_dinov2(seed=4).save_pretrained(folder)
    _touch(folder / "model.safetensors", 3_000_000)
    assert models.dinov2_weights_id("facebook/dinov2-small", isolated / "weights") != first


def test_dinov2_weights_id_from_the_hugging_face_cache(isolated, monkeypatch):
    repo = isolated / "hf" / "hub" / "models--facebook--dinov2-small"
    snapshot = repo / "snapshots" / "0123abcd"
    tiny_dinov2().save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _forbid_loading(monkeypatch)
    identity = models.dinov2_weights_id("facebook/dinov2-small")
    assert str(snapshot) in identity and "model.safetensors:" in identity


def test_dinov2_weights_id_missing(isolated, monkeypatch):
    calls = []

    def fake_snapshot_download(model_id, allow_patterns):
        calls.append(model_id)
        folder = isolated / "fetched"
        tiny_dinov2().save_pretrained(folder)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert "fetched" in models.dinov2_weights_id("facebook/dinov2-small")  # online: the files are fetched, not loaded
    assert calls == ["facebook/dinov2-small"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelWeightsError, match="HF_HUB_OFFLINE"):
        models.dinov2_weights_id("facebook/dinov2-small")


def test_module_identity_follows_the_weights():
    assert models.module_identity(tiny_dinov2(seed=1)) == models.module_identity(tiny_dinov2(seed=1))
    assert models.module_identity(tiny_dinov2(seed=1)) != models.module_identity(tiny_dinov2(seed=2))
    assert models.module_identity(tiny_sam(seed=0)).split()[:2] == ["segment_anything.modeling.sam.Sam", "cpu"]


# ------------------------------------------------------------------ check_weights and the hub


def fill_hub_cache(root: Path, model_id: str, model: Dinov2Model) -> None:
    """Lay out ``model`` as the Hugging Face hub cache holds a downloaded ``model_id``."""
    repo = root / "hf" / "hub" / f"models--{model_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    model.save_pretrained(repo / "snapshots" / ("0" * 40))


def test_dinov2_from_hub_cache_without_asking_the_hub(isolated, monkeypatch):
    saved = tiny_dinov2(seed=4)
    fill_hub_cache(isolated, "facebook/dinov2-small", saved)
    calls = spy_on_from_pretrained(monkeypatch)
    assert_same_weights(models.load_dinov2("facebook/dinov2-small"), saved.state_dict())
    assert calls == [("facebook/dinov2-small", {"use_safetensors": True, "local_files_only": True})]


def test_hub_warnings_are_silenced_while_loading(isolated, monkeypatch, caplog):
    def retrying(cls, source, **kwargs):
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        return tiny_dinov2()

    monkeypatch.setattr(Dinov2Model, "from_pretrained", classmethod(retrying))
    level = logging.getLogger("huggingface_hub").level
    with caplog.at_level(logging.INFO):
        models.load_dinov2("facebook/dinov2-small")
    assert not [r for r in caplog.records if r.name.startswith("huggingface_hub")]
    assert logging.getLogger("huggingface_hub").level == level


@pytest.fixture
def no_probe(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("no download host may be probed when nothing needs downloading")

    monkeypatch.setattr(socket, "create_connection", fail)


def test_check_weights_finds_everything_on_disk(isolated, no_probe):
    save_tiny_sam(isolated / "weights" / SAM_FILE)
    tiny_dinov2().save_pretrained(isolated / "weights" / "dinov2-small")
    models.check_weights("vit_b", "facebook/dinov2-small", weights_dir=isolated / "weights")
    models.check_weights(None, None)  # a weight-free pipeline needs nothing


def test_check_weights_offline_names_every_missing_file_in_one_line(isolated, no_probe, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelWeightsError) as info:
        models.check_weights("vit_b", "facebook/dinov2-small", weights_dir=isolated / "weights")
    message = str(info.value)
    assert "\n" not in message and SAM_FILE in message and "facebook/dinov2-small" in message
    assert "downloads are off" in message
    assert "--weights-dir" in message and models.WEIGHTS_ENV in message  # way 1
    assert str(isolated / "torch" / "hub" / "checkpoints") in message and huggingface_hub.constants.HF_HUB_CACHE in message  # way 2
    assert "network access" in message  # way 3


def test_check_weights_fails_at_once_when_the_hosts_cannot_be_reached(isolated, no_network):
    save_tiny_sam(_cache_path(isolated))  # SAM is on disk: only the DINOv2 host is probed
    start = time.perf_counter()
    with pytest.raises(ModelWeightsError, match="huggingface.co cannot be reached") as info:
        models.check_weights("vit_b", "facebook/dinov2-small")
    assert time.perf_counter() - start < models.PROBE_TIMEOUT_S
    assert SAM_FILE not in str(info.value) and "dinov2-small" in str(info.value)


def test_check_weights_lets_a_download_start_when_the_host_answers(isolated, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as proxy:
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        models.check_weights("vit_b", "facebook/dinov2-small")


def test_no_test_can_reach_a_hub() -> None:
    """The autouse guard of tests/conftest.py: a lookup or a connection beyond this machine fails at once."""
    with pytest.raises(OSError, match="must not reach the network"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with socket.socket() as sock, pytest.raises(OSError, match="must not reach the network"):
        sock.connect(("93.184.216.34", 443))
