"""What an image's cached model outputs depend on, as one string: the settings part of the cache key.

``model_key`` names, for the segmenter and the embedder:

- the stage class (qualified name) and its ``version``, which the code
  carries and bumps whenever a change alters the stage's output;
- its parameters: the pipeline config's segmenter / embedder settings
  (always), and, for a stage instance given to ``Pipeline``, every constructor
  parameter the instance holds (scikit-learn style: stored under the
  parameter's name);
- its weights: for a stage the pipeline builds, the identity of the weight
  files it would load (``loco_ad.models.sam_weights_id`` /
  ``dinov2_weights_id``, from file metadata, so a fully cached run loads no
  model) and the device type (GPU runs use other precisions); for a given
  instance, a hash of its model's whole state (``models.module_identity``).

Anything of a parameter that cannot be named reliably (an object without a
stable ``repr``) gives a key that changes from run to run: a cache miss, never
a stale hit.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np

from loco_ad.build import embedder_class, segmenter_class
from loco_ad.config import PipelineConfig


def stage_identity(stage: object) -> dict[str, Any]:
    """The class, version and (for an instance) parameters of a stage.

    Arguments:
      stage: a stage class or instance.
    Returns:
      ``{"class": module.qualname, "version": version or None}`` and, for an
      instance, ``"params"``: each constructor parameter the instance holds, by name.
    """
    cls = stage if isinstance(stage, type) else type(stage)
    identity: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__qualname__}", "version": getattr(cls, "version", None)}
    if not isinstance(stage, type):
        names = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
        identity["params"] = {name: _value_identity(getattr(stage, name)) for name in names if hasattr(stage, name)}
    return identity


def _value_identity(value: Any) -> Any:
    """A JSON-able stand-in for a parameter value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_value_identity(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _value_identity(item) for key, item in value.items()}
    if hasattr(value, "state_dict") and hasattr(value, "parameters"):  # a torch module: torch is already imported
        from loco_ad.models import module_identity

        return module_identity(value)
    return repr(value)


def model_key(
    config: PipelineConfig,
    segmenter: object | None = None,
    embedder: object | None = None,
    weights_dir: Path | None = None,
    device: str = "auto",
) -> str:
    """The settings string of ``AnalysisCache.key`` for a pipeline's model outputs.

    Arguments:
      config: the pipeline settings.
      segmenter, embedder: the stage instances given to ``Pipeline``, or None for
        a stage the pipeline builds from ``config`` (named by its class, version,
        config and weight files, without building it).
      weights_dir: folder searched first for model weights.
      device: the pipeline's device (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    Returns:
      a JSON string; equal strings mean equal outputs for equal pixels.
    Raises:
      ModelWeightsError: weights a built stage needs are not available (every
        missing file named at once, before any is looked up or downloaded).
    """
    sam_model = config.segmenter.sam.model if segmenter is None and config.segmenter.kind == "sam" else None
    dinov2_id = config.embedder.dinov2.model_id if embedder is None and config.embedder.kind == "dinov2" else None
    if sam_model or dinov2_id:
        from loco_ad.models import check_weights

        check_weights(sam_model, dinov2_id, weights_dir)
    if segmenter is None:
        segmenter_id = stage_identity(segmenter_class(config))
        if config.segmenter.kind == "sam":
            from loco_ad.models import sam_weights_id

            segmenter_id.update(weights=sam_weights_id(config.segmenter.sam.model, weights_dir), device=_device_type(device))
    else:
        segmenter_id = stage_identity(segmenter)
    if embedder is None:
        embedder_id = stage_identity(embedder_class(config))
        if config.embedder.kind == "dinov2":
            from loco_ad.models import dinov2_weights_id

            embedder_id.update(weights=dinov2_weights_id(config.embedder.dinov2.model_id, weights_dir), device=_device_type(device))
    else:
        embedder_id = stage_identity(embedder)
    settings = {"segmenter": dataclasses.asdict(config.segmenter), "embedder": dataclasses.asdict(config.embedder)}
    return json.dumps({"settings": settings, "segmenter": segmenter_id, "embedder": embedder_id}, sort_keys=True)


def _device_type(device: str) -> str:
    """``cuda`` or ``cpu`` (the device index does not change outputs)."""
    from loco_ad.models import resolve_device

    return resolve_device(device).split(":")[0]
