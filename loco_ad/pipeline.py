"""The staged pipeline: prepare (embed, segment; cached) → align → score with the ensemble.

``Pipeline.fit`` takes the good reference images, ``Pipeline.predict`` scores one
image. Each image's model outputs (patch features and, when the segmenter does
not depend on the references, its segments) are computed once per model setting
and kept in an ``AnalysisCache`` on disk and in memory, so re-fitting with other
references, k, seeds or scorers does no model work again.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import cv2
import numpy as np
from tqdm.auto import tqdm

from loco_ad.analysis import ImageAnalysis, Prediction
from loco_ad.cache import AnalysisCache, default_cache_dir
from loco_ad.config import PipelineConfig, get_preset
from loco_ad.data import read_image
from loco_ad.errors import DataError
from loco_ad.features.patches import BANKS_ON_GPU
from loco_ad.stages import Embedder, Segmenter
from loco_ad.stages.align import align, patch_grid_labels, reference_labels
from loco_ad.stages.cielab import rgb_to_lab
from loco_ad.weights import Ensemble

logger = logging.getLogger(__name__)

ImageInput = Union[str, os.PathLike, np.ndarray]


@dataclass(frozen=True)
class PreparedImage:
    """An image at working resolution with its model outputs.

    Arguments:
      rgb: H×W×3 uint8 at working resolution.
      lab: H×W×3 float32 CIELAB of ``rgb``.
      patches: h×w×D float32 L2-normalised patch features.
      segment_map: H×W int32 partition, or None when the segmenter needs the references first.
    """

    rgb: np.ndarray
    lab: np.ndarray
    patches: np.ndarray
    segment_map: np.ndarray | None


def _segmenter_class(kind: str) -> type:
    if kind == "sam":
        from loco_ad.stages.segment import SamSegmenter

        return SamSegmenter
    from loco_ad.stages.colour_segment import ColourClusterSegmenter

    return ColourClusterSegmenter


def build_segmenter(config: PipelineConfig, weights_dir: Path | None, device: str) -> Segmenter:
    """The segmenter ``config`` names, its weights loaded through ``loco_ad.models``.

    ``device`` may be ``"auto"``; the weight-free segmenter ignores it (and never imports torch).
    """
    settings = config.segmenter
    if settings.kind == "sam":
        from loco_ad.models import load_sam, resolve_device
        from loco_ad.stages.segment import SamSegmenter

        model = load_sam(settings.sam_model, weights_dir, resolve_device(device))
        return SamSegmenter(model, points_per_side=settings.points_per_side, min_area=settings.min_area)
    from loco_ad.stages.colour_segment import ColourClusterSegmenter

    return ColourClusterSegmenter(n_colours=settings.n_colours, min_area=settings.min_area)


def build_embedder(config: PipelineConfig, weights_dir: Path | None, device: str) -> Embedder:
    """The patch embedder ``config`` names, its weights loaded through ``loco_ad.models``.

    ``device`` may be ``"auto"``; the weight-free embedder ignores it (and never imports torch).
    """
    settings = config.embedder
    if settings.kind == "dinov2":
        from loco_ad.models import load_dinov2, resolve_device
        from loco_ad.stages.embed import Dinov2Embedder

        device = resolve_device(device)
        return Dinov2Embedder(load_dinov2(settings.model_id, weights_dir, device), patch_size=settings.patch_size, device=device)
    from loco_ad.stages.handcrafted import HandcraftedEmbedder

    return HandcraftedEmbedder(
        patch_size=settings.patch_size, neighbour_weight=settings.neighbour_weight, position_weight=settings.position_weight
    )


class Pipeline:
    """Few-shot anomaly detection: fit on good images, score others.

    Arguments:
      config: the pipeline settings (see ``loco_ad.config.PRESETS``).
      segmenter, embedder: stage instances; when None they are built from
        ``config`` on first use, so a fully cached run loads no model.
      cache: where model outputs are kept; None keeps them in memory only.
      weights_dir: folder searched first for model weights.
      device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
      progress: show progress bars.
    """

    def __init__(
        self,
        config: PipelineConfig,
        segmenter: Segmenter | None = None,
        embedder: Embedder | None = None,
        cache: AnalysisCache | None = None,
        weights_dir: Path | None = None,
        device: str = "auto",
        progress: bool = True,
    ) -> None:
        self.config = config
        self.cache = cache
        self.weights_dir = weights_dir
        self.device = device
        self.progress = progress
        self._segmenter = segmenter
        self._embedder = embedder
        self._prepared: dict[str, PreparedImage] = {}
        self._keys_by_path: dict[tuple[str, int, int], str] = {}
        self.references: list[ImageAnalysis] = []
        self.ensemble: Ensemble | None = None

    @classmethod
    def from_preset(
        cls,
        name: str,
        scorers: Sequence[str] | None = None,
        cache_dir: Path | None = None,
        use_cache: bool = True,
        **kwargs,
    ) -> "Pipeline":
        """A pipeline with the named preset's settings.

        Arguments:
          name: ``paper``, ``fast`` or ``offline``.
          scorers: scorer ids to enable instead of the preset's default ensemble.
          cache_dir: cache folder (default ``default_cache_dir()``).
          use_cache: False keeps model outputs in memory only.
          kwargs: passed to ``Pipeline`` (weights_dir, device, progress).
        """
        config = get_preset(name)
        if scorers:
            config = config.with_scorers(tuple(scorers))
        cache = AnalysisCache(cache_dir or default_cache_dir()) if use_cache else None
        return cls(config, cache=cache, **kwargs)

    # ---------------------------------------------------------------- stages
    @property
    def segmenter(self) -> Segmenter:
        if self._segmenter is None:
            self._segmenter = build_segmenter(self.config, self.weights_dir, self.device)
        return self._segmenter

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = build_embedder(self.config, self.weights_dir, self.device)
        return self._embedder

    @property
    def segments_per_image(self) -> bool:
        """True when segments depend on the image alone and are cached with the features."""
        segmenter_type = type(self._segmenter) if self._segmenter is not None else _segmenter_class(self.config.segmenter.kind)
        return not segmenter_type.reference_dependent

    # ------------------------------------------------------------- preparing
    def _working_rgb(self, image: ImageInput) -> np.ndarray:
        rgb = image if isinstance(image, np.ndarray) else read_image(image)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise DataError(f"expected an H×W×3 uint8 RGB image, got an array of shape {rgb.shape} and type {rgb.dtype}")
        if self.config.input_size is not None:
            rgb = cv2.resize(rgb, self.config.input_size[::-1], interpolation=cv2.INTER_AREA)
        height, width = self.config.working_size(*rgb.shape[:2])
        if (height, width) == rgb.shape[:2]:
            return rgb
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)

    def _path_id(self, image: ImageInput) -> tuple[str, int, int] | None:
        if isinstance(image, np.ndarray):
            return None
        stat = Path(image).stat()
        return (str(Path(image).resolve()), stat.st_mtime_ns, stat.st_size)

    def prepare_many(
        self, images: Sequence[ImageInput], progress: bool | None = None, remember: bool = True
    ) -> list[PreparedImage]:
        """Working-resolution images with their patch features (and segments when cacheable).

        Looks in memory, then in the on-disk cache; runs the models only on the
        rest, embedding them in batches, and stores their outputs.

        Arguments:
          images: file paths or H×W×3 uint8 arrays.
          progress: show a progress bar (default: the pipeline's setting).
          remember: keep the results in memory for later calls (an evaluation
            re-scores the same images for every seed and k); False when the
            images are scored once, so that memory does not grow with their number.
        Returns:
          one ``PreparedImage`` per input, in order.
        """
        keys: list[str] = []
        found: dict[str, PreparedImage] = {}
        pending: dict[str, np.ndarray] = {}
        for image in images:
            path_id = self._path_id(image)
            if path_id in self._keys_by_path:
                keys.append(self._keys_by_path[path_id])
                continue
            rgb = self._working_rgb(image)
            key = AnalysisCache.key(rgb, self.config.model_key())
            if path_id is not None and remember:
                self._keys_by_path[path_id] = key
            keys.append(key)
            if key not in self._prepared and key not in found and key not in pending:
                stored = self.cache.load(key) if self.cache is not None else None
                if stored is None:
                    pending[key] = rgb
                else:
                    found[key] = self._prepared_image(rgb, stored)
        if pending:
            found.update(self._run_models(pending, self.progress if progress is None else progress))
        if remember:
            self._prepared.update(found)
        return [self._prepared[key] if key in self._prepared else found[key] for key in keys]

    def _run_models(self, pending: dict[str, np.ndarray], progress: bool) -> dict[str, PreparedImage]:
        batch = 8
        items = list(pending.items())
        prepared: dict[str, PreparedImage] = {}
        with tqdm(total=len(items), desc="analysing images", unit="img", disable=not progress) as bar:
            for start in range(0, len(items), batch):
                chunk = items[start : start + batch]
                features = self.embedder.embed([rgb for _, rgb in chunk])
                for (key, rgb), patches in zip(chunk, features):
                    arrays = {"patches": patches.astype(np.float32)}
                    if self.segments_per_image:
                        arrays["segment_map"] = self.segmenter.segment(rgb).astype(np.int32)
                    if self.cache is not None:
                        self.cache.save(key, arrays)
                    prepared[key] = self._prepared_image(rgb, arrays)
                    bar.update()
        return prepared

    @staticmethod
    def _prepared_image(rgb: np.ndarray, arrays: dict[str, np.ndarray]) -> PreparedImage:
        return PreparedImage(rgb, rgb_to_lab(rgb), arrays["patches"], arrays.get("segment_map"))

    # ------------------------------------------------------------- analysing
    def _segment_map(self, prepared: PreparedImage) -> np.ndarray:
        if prepared.segment_map is not None:
            return prepared.segment_map
        return self.segmenter.segment(prepared.rgb).astype(np.int32)

    def _analysis(self, prepared: PreparedImage, segment_map: np.ndarray, labels: np.ndarray, n_classes: int) -> ImageAnalysis:
        return ImageAnalysis(
            rgb=prepared.rgb,
            lab=prepared.lab,
            segment_map=segment_map,
            labels=labels,
            patches=prepared.patches,
            patch_labels=patch_grid_labels(labels, prepared.patches.shape[:2]),
            n_classes=n_classes,
        )

    def _analyse(self, prepared: PreparedImage) -> ImageAnalysis:
        """Segment (unless cached) and label an image; before any reference exists it becomes the canonical one."""
        if self.config.alignment == "segmenter":
            segment_map, labels = self.segmenter.segment_classes(prepared.rgb)
            return self._analysis(prepared, segment_map, labels, self.segmenter.n_classes)
        segment_map = self._segment_map(prepared)
        if not self.references:
            labels = reference_labels(segment_map)
            n_classes = int(labels.max()) + 1
        else:
            canonical = self.references[0]
            labels = align(canonical, segment_map, prepared.patches, prepared.lab, method=self.config.alignment)
            n_classes = canonical.n_classes
        return self._analysis(prepared, segment_map, labels, n_classes)

    # ------------------------------------------------------------ public API
    def fit(self, images: Sequence[ImageInput]) -> "Pipeline":
        """Learn from good images: the first one defines the classes, all are aligned to it.

        With ``alignment="segmenter"`` the segmenter's own class ids are used instead.

        Arguments:
          images: one or more good images (paths or arrays).
        Returns:
          self.
        """
        self.ensemble = Ensemble(self.config.scorers).fit(self.fit_references(images))
        return self

    def fit_references(self, images: Sequence[ImageInput]) -> list[ImageAnalysis]:
        """The first half of ``fit``: analyse the good images as ``references``, without fitting the scorers.

        Arguments:
          images: one or more good images (paths or arrays).
        Returns:
          their analyses (also kept as ``self.references``).
        """
        if len(images) == 0:
            raise DataError("fit needs at least one good image")
        prepared = self.prepare_many(images)
        if not self.segments_per_image:
            self.segmenter.fit([p.rgb for p in prepared])
        self.references = []
        for image in prepared:
            self.references.append(self._analyse(image))
        return self.references

    def analyse_many(self, images: Sequence[ImageInput], progress: bool | None = None) -> list[ImageAnalysis]:
        """Segment, align and embed images against the references of the last ``fit`` / ``fit_references``."""
        if not self.references:
            raise RuntimeError("call Pipeline.fit_references with good images before analysing others")
        prepared = self.prepare_many(images, progress)
        with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
            return list(pool.map(self._analyse, prepared))

    def _fitted_ensemble(self) -> Ensemble:
        if self.ensemble is None:
            raise RuntimeError("call Pipeline.fit with good images before predicting")
        return self.ensemble

    def predict_analysis(self, analysis: ImageAnalysis) -> Prediction:
        """Score an already analysed image."""
        result = self._fitted_ensemble().score(analysis)
        return Prediction(result.value, result.map, result.scores, result.raw_scores, analysis)

    def predict(self, image: ImageInput) -> Prediction:
        """Score one image (path or H×W×3 uint8 array); it is not kept in memory after scoring."""
        return self.predict_many([image], progress=False, remember=False)[0]

    def predict_many(
        self, images: Sequence[ImageInput], progress: bool | None = None, remember: bool = True
    ) -> list[Prediction]:
        """Score several images, their model work batched (``remember`` as in ``prepare_many``)."""
        self._fitted_ensemble()
        prepared = self.prepare_many(images, progress, remember)
        # Alignment and scoring spend their time in OpenCV, NumPy, scikit-learn and faiss, which release the GIL;
        # one thread when the patch banks are faiss GPU indexes, which are not thread-safe.
        with ThreadPoolExecutor(max_workers=1 if BANKS_ON_GPU else os.cpu_count()) as pool:
            return list(pool.map(lambda image: self.predict_analysis(self._analyse(image)), prepared))

    def leave_one_out_scores(self) -> list[float]:
        """Ensemble score of each reference when the ensemble is fitted on the others (empty for k = 1)."""
        if len(self.references) < 2:
            return []
        scores = []
        for index, held_out in enumerate(self.references):
            others = self.references[:index] + self.references[index + 1 :]
            scores.append(Ensemble(self.config.scorers).fit(others).score(held_out).value)
        return scores

    @property
    def weights(self) -> dict[str, float]:
        """The leave-one-out weight of each enabled scorer."""
        return dict(self._fitted_ensemble().weights)

    @property
    def used_fallback(self) -> bool:
        """True when k = 1 and the documented fallback scales replaced leave-one-out weights."""
        return self._fitted_ensemble().used_fallback
