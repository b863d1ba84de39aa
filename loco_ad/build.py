"""The one place a ``PipelineConfig`` becomes components: normalisation, registration, segmenter, embedder, scorers, detector.

Every caller (the pipeline, the benchmark, the VAND submission, the tests)
builds through these functions, so a knob of ``loco_ad.config`` means the same
everywhere. Model weights come through ``loco_ad.models``; ``random_weights``
builds the same architectures untrained (benchmarks; nothing is read or
downloaded). The weight-free components never import torch.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

from loco_ad.analysis import Scorer
from loco_ad.config import PATCH_SCORERS, PipelineConfig
from loco_ad.core import Detector
from loco_ad.stages import Embedder, Segmenter
from loco_ad.stages.normalise import Normaliser
from loco_ad.stages.register import Registration


def build_normaliser(config: PipelineConfig) -> Normaliser | None:
    """The light normalisation ``config`` asks for (``normalisation`` block), or None for ``method="none"``.

    Where it applies (``after_registration``) is the pipeline's business, not the normaliser's.
    """
    settings = dataclasses.asdict(config.normalisation)
    settings.pop("after_registration")
    return None if settings["method"] == "none" else Normaliser(**settings)


def build_registration(config: PipelineConfig) -> Registration | None:
    """The registration ``config`` asks for (``registration`` block), or None for ``motion="none"``."""
    settings = dataclasses.asdict(config.registration)
    return None if settings["motion"] == "none" else Registration(**settings)


def segmenter_class(config: PipelineConfig) -> type:
    """The segmenter class ``config`` names (to ask, e.g., ``reference_dependent`` without building it)."""
    if config.segmenter.kind == "sam":
        from loco_ad.stages.segment import SamSegmenter

        return SamSegmenter
    from loco_ad.stages.colour_segment import ColourClusterSegmenter

    return ColourClusterSegmenter


def embedder_class(config: PipelineConfig) -> type:
    """The embedder class ``config`` names (to ask, e.g., its ``version`` without building it)."""
    if config.embedder.kind == "dinov2":
        from loco_ad.stages.embed import Dinov2Embedder

        return Dinov2Embedder
    from loco_ad.stages.handcrafted import HandcraftedEmbedder

    return HandcraftedEmbedder


def build_segmenter(
    config: PipelineConfig, weights_dir: Path | None = None, device: str = "auto", random_weights: bool = False
) -> Segmenter:
    """The segmenter ``config`` names, with its settings.

    Arguments:
      config: the pipeline configuration (``segmenter`` block).
      weights_dir: folder searched first for SAM weights (see ``loco_ad.models``).
      device: ``"auto"``, ``"cpu"`` or ``"cuda"``; the weight-free segmenter ignores it.
      random_weights: build SAM untrained at its real size instead of loading weights.
    Returns:
      the segmenter.
    """
    settings = config.segmenter
    if settings.kind == "sam":
        from loco_ad import models

        device = models.resolve_device(device)
        sam = models.random_sam(settings.sam.model) if random_weights else models.load_sam(settings.sam.model, weights_dir, device)
        knobs = {key: value for key, value in dataclasses.asdict(settings.sam).items() if key != "model"}
        return segmenter_class(config)(sam.to(device).eval(), min_area=settings.min_area, **knobs)
    return segmenter_class(config)(min_area=settings.min_area, **dataclasses.asdict(settings.colour_clusters))


def build_embedder(
    config: PipelineConfig, weights_dir: Path | None = None, device: str = "auto", random_weights: bool = False
) -> Embedder:
    """The patch embedder ``config`` names, with its settings.

    Arguments:
      config: the pipeline configuration (``embedder`` block).
      weights_dir: folder searched first for DINOv2 weights (see ``loco_ad.models``).
      device: ``"auto"``, ``"cpu"`` or ``"cuda"``; the weight-free embedder ignores it.
      random_weights: build DINOv2 untrained at its real size instead of loading weights.
    Returns:
      the embedder.
    """
    settings = config.embedder
    if settings.kind == "dinov2":
        from loco_ad import models

        device = models.resolve_device(device)
        model_id = settings.dinov2.model_id
        model = models.build_dinov2(model_id) if random_weights else models.load_dinov2(model_id, weights_dir, device)
        return embedder_class(config)(model, patch_size=settings.patch_size, device=device, batch_size=settings.dinov2.batch_size)
    return embedder_class(config)(patch_size=settings.patch_size, **dataclasses.asdict(settings.handcrafted))


def banks_on_gpu(device: str) -> bool:
    """True when patch banks should be faiss GPU indexes: a CUDA ``device`` (or ``"auto"``) and a faiss GPU build."""
    if device == "cpu":
        return False
    import faiss

    return faiss.get_num_gpus() > 0


def build_scorer(name: str, config: PipelineConfig, gpu: bool = False) -> Scorer:
    """A new, unfitted scorer ``name`` with its settings from ``config.scorers``.

    Arguments:
      name: a scorer id (``loco_ad.config.KNOWN_SCORERS``).
      config: the pipeline configuration.
      gpu: put a patch scorer's banks on the GPU.
    Returns:
      the scorer.
    """
    from loco_ad.features import make_scorer

    params = dataclasses.asdict(getattr(config.scorers, name))
    if name in PATCH_SCORERS:
        params["gpu"] = gpu
    return make_scorer(name, **params)


def build_detector(config: PipelineConfig, gpu: bool = False) -> Detector:
    """The unfitted ``Detector`` of the enabled scorers (``config.ensemble``).

    Arguments:
      config: the pipeline configuration.
      gpu: put the patch scorers' banks on the GPU (see ``banks_on_gpu``).
    Returns:
      the detector.
    """
    from loco_ad.features import SCORERS

    ensemble = config.ensemble
    return Detector(
        {name: partial(build_scorer, name, config, gpu) for name in ensemble.scorers},
        multipliers=ensemble.multipliers.as_dict(),
        fallback_scales=ensemble.fallback_scales.as_dict(),
        weight_floor_fraction=ensemble.weight_floor_fraction,
        combination=ensemble.combination,
        log_offset=ensemble.log_offset,
        cap=ensemble.cap,
        single_reference_scorers=ensemble.single_reference_scorers,
        single_reference_margin=ensemble.single_reference_margin,
        min_references=ensemble.min_references.as_dict(),
        threshold_rule=ensemble.threshold_rule,
        target_fpr=ensemble.target_fpr,
        coarse_maps=tuple(name for name in ensemble.scorers if not getattr(SCORERS[name], "localises", True)),
        uses_gpu=gpu,
    )
