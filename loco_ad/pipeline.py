"""The I/O shell around the pure core: read images, register them, run the models (cached), align, then score.

``Pipeline.fit`` takes the good reference images, ``Pipeline.predict`` scores one
image. Each image's model outputs (patch features and, when the segmenter does
not depend on the references, its segments) are computed once per model setting
and kept in an ``AnalysisCache`` on disk and in memory, so re-fitting with other
references, k, seeds or scorers does no model work again. Segmentation by a
reference-dependent segmenter and alignment turn these outputs into
``ImageAnalysis`` objects, which the core ``loco_ad.core.Detector`` fits and
scores. Weight-free presets never import torch.

With ``normalisation`` enabled, every image's light is first mapped onto the
references' of the last fit (``loco_ad.stages.normalise``); the normalised image
is what every later stage, and the analysis, sees.
With ``registration`` enabled, every image is first moved onto the first
reference of the last fit (``loco_ad.stages.register``): the models see the
moved image (the cache key is its content, so a moved image is a new entry),
and each ``Prediction`` is put back in the input's own frame (its map, and
the image, segments and labels of its analysis), so maps line up with the
input and its ground truth.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence, TypeVar, Union

import cv2
import numpy as np
from tqdm.auto import tqdm

from loco_ad import fitcache, identity
from loco_ad.adapt import ScoreFunction, apply_decisions, choose_settings
from loco_ad.analysis import ImageAnalysis, Prediction, Score
from loco_ad.build import (
    banks_on_gpu,
    build_detector,
    build_embedder,
    build_normaliser,
    build_registration,
    build_segmenter,
    segmenter_class,
)
from loco_ad.cache import AnalysisCache, ArraySpec, default_cache_dir
from loco_ad.config import PipelineConfig, apply_overrides, get_preset
from loco_ad.core import Detector
from loco_ad.data import read_image
from loco_ad.errors import DataError
from loco_ad.stages import Embedder, Segmenter
from loco_ad.stages.align import align, patch_grid_labels, reference_labels
from loco_ad.stages.cielab import rgb_to_lab
from loco_ad.stages.normalise import Normaliser
from loco_ad.stages.register import Registration, covered, unwarp

logger = logging.getLogger(__name__)

ImageInput = Union[str, os.PathLike, np.ndarray]
T = TypeVar("T")
DECISIONS = "decisions"  # the array of a fit's cache entry holding what its references decided, as JSON
PREPARE_BATCH = 32  # images through the models at once in prepare_for_fits, when they are not kept


@dataclass(frozen=True)
class PreparedImage:
    """An image at working resolution with its model outputs.

    Arguments:
      rgb: H×W×3 uint8 at working resolution.
      lab: H×W×3 float32 CIELAB of ``rgb``.
      patches: h×w×D float32 L2-normalised patch features.
      segment_map: H×W int32 partition, or None when the segmenter needs the references first.
      original: the (normalised) input at working resolution before registration, or None when it was not moved.
      matrix: the 2×3 registration matrix (``loco_ad.stages.register``), or None when it was not moved.
    """

    rgb: np.ndarray
    lab: np.ndarray
    patches: np.ndarray
    segment_map: np.ndarray | None
    original: np.ndarray | None = None
    matrix: np.ndarray | None = None


class Pipeline:
    """Few-shot anomaly detection: fit on good images, score others.

    Arguments:
      config: the pipeline settings (see ``loco_ad.config.PRESETS``); ``active_config``
        is what the last fit ran with (``config.for_references(k)``).
      segmenter, embedder: stage instances; when None they are built from
        ``config`` (``loco_ad.build``) on first use, so a fully cached run loads no model.
      cache: where model outputs are kept; None keeps them in memory only.
      weights_dir: folder searched first for model weights.
      device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (models and patch banks).
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
        self.active_config = config  # config.for_references(k) of the last fit
        self.cache = cache
        self.weights_dir = weights_dir
        self.device = device
        self.progress = progress
        self._segmenter = segmenter
        self._embedder = embedder
        self._given_stages = (segmenter, embedder)
        self._prepared: dict[str, PreparedImage] = {}
        self._keys_by_path: dict[tuple[str, int, int], str] = {}
        self._content_keys: dict[tuple, str] = {}  # (model key, path id) → content_key
        self._fit: tuple[str, Sequence[ImageInput]] | None = None  # fit_cached's fit identity and references
        self.references: list[ImageAnalysis] = []
        self.detector: Detector | None = None
        self.registration: Registration | None = None
        self.normaliser: Normaliser | None = None
        self._normalise_registered = False  # normalisation.after_registration of the last fit
        self.decisions: dict = {}  # what the references decided in the last fit (``loco_ad.adapt``)

    @classmethod
    def from_preset(
        cls,
        name: str,
        scorers: Sequence[str] | None = None,
        overrides: Sequence[str] = (),
        cache_dir: Path | None = None,
        use_cache: bool = True,
        **kwargs,
    ) -> "Pipeline":
        """A pipeline with the named preset's settings.

        Arguments:
          name: ``paper``, ``fast`` or ``offline``.
          scorers: scorer ids to enable instead of the preset's default ensemble.
          overrides: ``dotted.key=value`` settings (see ``loco_ad.config.apply_overrides``).
          cache_dir: cache folder (default ``default_cache_dir()``).
          use_cache: False keeps model outputs in memory only.
          kwargs: passed to ``Pipeline`` (weights_dir, device, progress).
        """
        config = get_preset(name)
        if scorers:
            config = config.with_scorers(scorers)
        config = apply_overrides(config, overrides)
        cache = AnalysisCache(cache_dir or default_cache_dir()) if use_cache else None
        return cls(config, cache=cache, **kwargs)

    # ---------------------------------------------------------------- stages
    @property
    def segmenter(self) -> Segmenter:
        if self._segmenter is None:
            self._segmenter = build_segmenter(self.active_config, self.weights_dir, self.device)
        return self._segmenter

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = build_embedder(self.active_config, self.weights_dir, self.device)
        return self._embedder

    @property
    def segments_per_image(self) -> bool:
        """True when segments depend on the image alone and are cached with the features."""
        segmenter_type = type(self._segmenter) if self._segmenter is not None else segmenter_class(self.active_config)
        return not segmenter_type.reference_dependent

    @cached_property
    def model_key(self) -> str:
        """The settings part of every cache key (``loco_ad.identity.model_key``), computed once, loading no model."""
        return identity.model_key(self.active_config, *self._given_stages, weights_dir=self.weights_dir, device=self.device)

    # ------------------------------------------------------------- preparing
    def _working_rgb(self, image: ImageInput) -> np.ndarray:
        rgb = image if isinstance(image, np.ndarray) else read_image(image)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
            raise DataError(f"expected an H×W×3 uint8 RGB image, got an array of shape {rgb.shape} and type {rgb.dtype}")
        if self.active_config.input_size is not None:
            rgb = cv2.resize(rgb, self.active_config.input_size[::-1], interpolation=cv2.INTER_AREA)
        height, width = self.active_config.working_size(*rgb.shape[:2])
        if (height, width) == rgb.shape[:2]:
            return rgb
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)

    def _path_id(self, image: ImageInput) -> tuple[str, int, int] | None:
        if isinstance(image, np.ndarray):
            return None
        try:
            stat = Path(image).stat()
        except OSError:  # read_image says what is wrong
            return None
        return (str(Path(image).resolve()), stat.st_mtime_ns, stat.st_size)

    def _stored_arrays(self, rgb: np.ndarray) -> dict[str, ArraySpec]:
        """What a cache entry for ``rgb`` must hold; any other entry is damaged."""
        expected: dict[str, ArraySpec] = {"patches": (np.float32, (None, None, None))}
        if self.segments_per_image:
            expected["segment_map"] = (np.int32, rgb.shape[:2])
        return expected

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
        images = _image_list(images)
        keys: list[str] = []
        found: dict[str, PreparedImage] = {}
        pending: dict[str, np.ndarray] = {}
        moved: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # key → (input, matrix) of registered images
        for image in images:
            path_id = self._path_id(image)
            if path_id in self._keys_by_path:
                keys.append(self._keys_by_path[path_id])
                continue
            original = self._working_rgb(image)
            if self.normaliser is not None and not self._normalise_registered:
                original = self.normaliser(original)
            rgb, matrix = self.registration.register(original) if self.registration is not None else (original, None)
            if self.normaliser is not None and self._normalise_registered:
                rgb = self.normaliser(rgb)
            key = AnalysisCache.key(rgb, self.model_key)
            if path_id is not None and remember:
                self._keys_by_path[path_id] = key
            keys.append(key)
            if matrix is not None:
                moved[key] = (original, matrix)
            if key not in self._prepared and key not in found and key not in pending:
                stored = self.cache.load(key, self._stored_arrays(rgb)) if self.cache is not None else None
                if stored is None:
                    pending[key] = rgb
                else:
                    found[key] = self._prepared_image(rgb, stored)
        if pending:
            found.update(self._run_models(pending, self.progress if progress is None else progress))
        found = {key: dataclasses.replace(image, original=moved[key][0], matrix=moved[key][1]) if key in moved else image
                 for key, image in found.items()}
        if remember:
            self._prepared.update(found)
        return [self._prepared[key] if key in self._prepared else found[key] for key in keys]

    def prepare_for_fits(self, images: Sequence[ImageInput], others: Sequence[ImageInput] = ()) -> None:
        """Do now the model work that every later fit can reuse (an evaluation's drawn references and test images).

        Without registration or normalisation that is all of it (for fits on more than
        ``config.few_references_max`` references: ``config.few_references`` may
        change the models for fewer); with either none, as a registered image depends on
        each fit's first reference and a normalised one on its references' light.

        Arguments:
          images: kept in memory (the references of later fits).
          others: with a disk cache, their outputs are stored there and not kept
            in memory (done ``PREPARE_BATCH`` at a time, so memory does not grow
            with their number; each fit reads them back); without one, kept too.
        """
        self._activate(self.config)
        if build_registration(self.config) is not None or build_normaliser(self.config) is not None:
            return
        self.prepare_many(images)
        if self.cache is None:
            self.prepare_many(others)
            return
        with tqdm(total=len(others), desc="analysing images", unit="img", disable=not self.progress) as bar:
            for start in range(0, len(others), PREPARE_BATCH):
                self.prepare_many(others[start : start + PREPARE_BATCH], progress=False, remember=False)
                bar.update(len(others[start : start + PREPARE_BATCH]))

    def _activate(self, config: PipelineConfig) -> None:
        """Put ``config`` (the settings for a number of references) in force: other settings, other stages and cache keys."""
        if config == self.active_config:
            return
        self.active_config = config
        self._segmenter, self._embedder = self._given_stages
        self.__dict__.pop("model_key", None)  # the cached_property
        self._keys_by_path.clear()

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
    def _analysis(self, prepared: PreparedImage, segment_map: np.ndarray, labels: np.ndarray, n_classes: int) -> ImageAnalysis:
        return ImageAnalysis(
            rgb=prepared.rgb,
            lab=prepared.lab,
            segment_map=segment_map,
            labels=labels,
            patches=prepared.patches,
            patch_labels=patch_grid_labels(labels, prepared.patches.shape[:2]),
            n_classes=n_classes,
            covered=None if prepared.matrix is None else covered(prepared.rgb.shape[:2], prepared.matrix),
        )

    def _analyse(self, prepared: PreparedImage, canonical: ImageAnalysis | None) -> ImageAnalysis:
        """Segment (unless cached) and label an image; with no ``canonical`` reference its segments define the classes."""
        if self.active_config.alignment.method == "segmenter":  # a ClassSegmenter (loco_ad.stages)
            segment_map, labels = self.segmenter.segment_classes(prepared.rgb)
            return self._analysis(prepared, segment_map, labels, self.segmenter.n_classes)
        segment_map = prepared.segment_map
        if segment_map is None:
            segment_map = self.segmenter.segment(prepared.rgb).astype(np.int32)
        if canonical is None:
            labels = reference_labels(segment_map)
            return self._analysis(prepared, segment_map, labels, int(labels.max()) + 1)
        labels = align(canonical, segment_map, prepared.patches, prepared.lab, self.active_config.alignment)
        return self._analysis(prepared, segment_map, labels, canonical.n_classes)

    # ------------------------------------------------------------ public API
    def fit(self, images: Sequence[ImageInput]) -> "Pipeline":
        """Learn from good images: the first one defines the classes, all are aligned to it.

        With ``alignment.method="segmenter"`` the segmenter's own class ids are
        used instead. Each fit builds a new ``Detector`` (``self.detector``), so
        a detector handed out earlier keeps what it learnt. A fit on k images
        runs with ``config.for_references(k)`` (the ``few_references`` settings
        up to ``few_references_max``; stages given to the constructor are used as given),
        then with the values the references choose when ``config.adapt`` offers
        choices (``loco_ad.adapt``; recorded in ``self.decisions``).

        Arguments:
          images: one or more good images (paths or arrays).
        Returns:
          self.
        """
        self.analyse_references(images)
        self.detector = build_detector(self.active_config, gpu=banks_on_gpu(self.device)).fit(self.references)
        return self

    def analyse_references(self, images: Sequence[ImageInput], decisions: dict | None = None) -> list[ImageAnalysis]:
        """The first half of ``fit``: analyse good images as the references (``self.references``), fit no scorer.

        A reference-dependent segmenter is fitted on them. Experiments that try
        many scorer settings on the same analyses (``experiments/cross_validate.py``)
        call this and ``analyse_many``, then build their own detectors.

        Arguments:
          images: one or more good images (paths or arrays).
        Returns:
          the references' analyses.
        """
        images = _image_list(images)
        if len(images) == 0:
            raise DataError("fit needs at least one good image")
        config = self.config.for_references(len(images))
        self.decisions = {}
        if config.adapt.decides and decisions is not None:
            config, self.decisions = apply_decisions(config, decisions), decisions
        elif config.adapt.decides:
            inputs = [image if isinstance(image, np.ndarray) else read_image(image) for image in images]
            config, self.decisions = choose_settings(config, inputs, self._candidate_scores(), build_registration(config))
        self._activate(config)
        self._fit = None  # raw_scores_many belongs to fit_cached's fits
        self.normaliser = build_normaliser(self.active_config)
        self._normalise_registered = self.active_config.normalisation.after_registration
        references = [self._working_rgb(image) for image in images] if self.normaliser is not None else []
        if self.normaliser is not None and not self._normalise_registered:
            self.normaliser.fit(references)
        self.registration = build_registration(self.active_config)
        if self.registration is not None:
            first = self._working_rgb(images[0])
            normalised_first = self.normaliser is not None and not self._normalise_registered
            self.registration.fit(self.normaliser(first) if normalised_first else first)
            self._keys_by_path.clear()  # a path's registered content depends on the first reference
            self._prepared = {key: image for key, image in self._prepared.items() if image.matrix is None}
        if self.normaliser is not None:
            if self._normalise_registered:
                self.normaliser.fit([self.registration.register(rgb)[0] for rgb in references]
                                    if self.registration is not None else references)
            self._keys_by_path.clear()  # a path's normalised content depends on the references
            self._prepared.clear()
        prepared = self.prepare_many(images)
        if not self.segments_per_image:
            self.segmenter.fit([p.rgb for p in prepared])
        canonical = self._analyse(prepared[0], None)
        self.references = [canonical] + [self._analyse(image, canonical) for image in prepared[1:]]
        self.detector = None
        return self.references

    def _candidate_scores(self) -> ScoreFunction:
        """``loco_ad.adapt``'s scoring of a candidate setting: a pipeline per candidate (memory only) fitted and scoring."""
        pipelines: dict[PipelineConfig, Pipeline] = {}

        def score(config: PipelineConfig, fit_images: Sequence[np.ndarray], tests: Sequence[np.ndarray]) -> list[float]:
            if config not in pipelines:
                segmenter, embedder = self._given_stages
                pipelines[config] = Pipeline(config, segmenter, embedder, None, self.weights_dir, self.device, progress=False)
            pipeline = pipelines[config].fit(fit_images)
            return [p.score for p in pipeline.predict_many(tests, progress=False, remember=False)]

        return score

    # ----------------------------------------------------------- cached fits
    def content_key(self, image: ImageInput) -> str:
        """The key of an image's content under the model settings in force (``fitcache.file_key`` for a file).

        For an array its pixels at working resolution (unregistered). For a file
        its bytes, whose decoding and resizing the fit's identity names (the code and the settings).
        """
        path_id = self._path_id(image)
        if path_id is None:
            return AnalysisCache.key(self._working_rgb(image), self.model_key)
        memo = (self.model_key, path_id)
        if memo not in self._content_keys:
            self._content_keys[memo] = fitcache.file_key(Path(image), self.model_key)
        return self._content_keys[memo]

    def working_shape(self, image: ImageInput) -> tuple[int, int]:
        """(height, width) of an image at working resolution, i.e. of its anomaly map."""
        return self._working_rgb(image).shape[:2]

    def fit_cached(self, images: Sequence[ImageInput], scorers: bool = False) -> str:
        """``fit`` through the cache (``loco_ad.fitcache``); returns the fit's identity (``fitcache.fit_id``).

        With a cache that holds this fit (what its references decided and the
        leave-one-out raw scores of the scorers in force), the detector is
        restored from it (``Detector.restore``): nothing is analysed or fitted,
        unless ``scorers`` asks for fitted scorers (which ``raw_scores_many`` fits
        itself when an image's scores are not stored); the references' decisions
        are then not made again. Otherwise it is ``fit``, and the fit is stored.
        """
        images = _image_list(images)
        if len(images) == 0:
            raise DataError("fit needs at least one good image")
        self._activate(self.config.for_references(len(images)))
        gpu = banks_on_gpu(self.device)
        fit = fitcache.fit_id(self.active_config, self.model_key, [self.content_key(image) for image in images], gpu)
        key = fitcache.fit_key(fit)
        stored = self.cache.load(key) if self.cache is not None else None
        decisions = json.loads(str(stored[DECISIONS])) if stored is not None and DECISIONS in stored else None
        if decisions is not None and not scorers:
            config = apply_decisions(self.active_config, decisions) if decisions else self.active_config
            detector = build_detector(config, gpu=gpu)
            names = detector.names_for(len(images))
            if all(f"loo.{name}" in stored for name in names):
                self._activate(config)
                self.decisions = decisions
                self.detector = detector.restore(len(images), {name: stored[f"loo.{name}"] for name in names})
                self._fit = (fit, images)
                return fit
        self.analyse_references(images, decisions)
        detector = build_detector(self.active_config, gpu=gpu)
        names = detector.names_for(len(images))
        known = decisions is not None and all(f"loo.{name}" in stored for name in names)
        self.detector = detector.fit(self.references, {name: stored[f"loo.{name}"] for name in names} if known else None)
        if self.cache is not None and not known:
            raw = self.detector.leave_one_out_raw_
            arrays = {f"loo.{name}": np.asarray(raw[name], dtype=np.float64) for name in names}
            fitcache.save_scorers(self.cache, key, {DECISIONS: np.array(json.dumps(self.decisions, sort_keys=True)), **arrays})
        self._fit = (fit, images)
        return fit

    def raw_scores_many(
        self, images: Sequence[ImageInput], size: tuple[int, int], whole: bool = False
    ) -> list[tuple[dict[str, np.ndarray], Prediction | None]]:
        """Per image of the last ``fit_cached``: each scorer's raw score and map at (height, width) ``size``.

        Each image's arrays (``value.<scorer>``, and ``map.<scorer>`` for the
        patch scorers, maps in the input's frame) come from the cache when stored
        under this fit, else are computed (fitting the scorers first if the
        detector was restored) and stored. Nothing is kept in memory.

        Arguments:
          images: file paths or H×W×3 uint8 arrays.
          size: (height, width) of the maps returned.
          whole: also return each image's whole ``Prediction`` (as ``predict_many``
            would, with its analysis); every image is then scored, none read.
        Returns:
          per image its arrays and its prediction (None unless ``whole``).
        """
        if self._fit is None or self.detector is None:
            raise RuntimeError("call Pipeline.fit_cached with good images before raw_scores_many")
        fit, references = self._fit
        names = self.detector.scorer_names
        results: list[tuple[dict[str, np.ndarray], Prediction | None] | None] = [None] * len(images)
        missing: list[tuple[int, str]] = []
        for index, image in enumerate(images):
            key = fitcache.raw_key(fit, self.content_key(image), size)
            stored = fitcache.load_scorers(self.cache, key, "value", names) if self.cache is not None and not whole else None
            if stored is None:
                missing.append((index, key))
            else:
                results[index] = (stored, None)
        if missing:
            if not self.detector.scorers_:
                self.fit_cached(references, scorers=True)
            detector = self.detector

            def score(prepared: PreparedImage, analysis: ImageAnalysis) -> tuple[dict[str, np.ndarray], Prediction | None]:
                raw = detector.raw(analysis)
                if not whole:
                    return _raw_arrays(raw, prepared, size), None
                return _raw_arrays(raw, prepared, size), _in_input_frame(detector.prediction(raw, analysis), prepared)

            computed = self._map_analysed([images[i] for i, _ in missing], score, False, False, threads=not detector.uses_gpu)
            for (index, key), (arrays, prediction) in zip(missing, computed):
                if self.cache is not None:
                    fitcache.save_scorers(self.cache, key, arrays)
                results[index] = (arrays, prediction)
        return results  # type: ignore[return-value]

    def _fitted_detector(self) -> Detector:
        if self.detector is None:
            raise RuntimeError("call Pipeline.fit with good images before predicting")
        return self.detector

    def predict(self, image: ImageInput) -> Prediction:
        """Score one image (path or H×W×3 uint8 array); it is not kept in memory after scoring."""
        return self.predict_many([image], progress=False, remember=False)[0]

    def predict_many(
        self, images: Sequence[ImageInput], progress: bool | None = None, remember: bool = True
    ) -> list[Prediction]:
        """Score several images, their model work batched (``remember`` as in ``prepare_many``)."""
        detector = self._fitted_detector()
        score = lambda prepared, analysis: _in_input_frame(detector.score(analysis), prepared)  # noqa: E731
        # one thread when the patch banks are faiss GPU indexes, which are not thread-safe
        return self._map_analysed(images, score, progress, remember, threads=not detector.uses_gpu)

    def analyse_many(self, images: Sequence[ImageInput], progress: bool | None = None) -> list[ImageAnalysis]:
        """Analyses of images aligned to the references of the last ``fit`` or ``analyse_references``."""
        if not self.references:
            raise RuntimeError("call Pipeline.fit or analyse_references with good images before analysing others")
        return self._map_analysed(images, lambda prepared, analysis: analysis, progress, remember=True, threads=True)

    def _map_analysed(
        self, images: Sequence[ImageInput], function: Callable[[PreparedImage, ImageAnalysis], T], progress: bool | None,
        remember: bool, threads: bool,
    ) -> list[T]:
        """``function`` of each prepared image and its analysis, in order; an analysis is dropped once seen."""
        prepared = self.prepare_many(images, progress, remember)
        canonical = self.references[0]
        # Alignment and scoring spend their time in OpenCV, NumPy, scikit-learn and faiss, which release the GIL.
        with ThreadPoolExecutor(max_workers=os.cpu_count() if threads else 1) as pool:
            return list(pool.map(lambda image: function(image, self._analyse(image, canonical)), prepared))

    def leave_one_out_scores(self) -> list[float]:
        """Score of each reference when left out of the fit, in the units of test scores (empty for k = 1)."""
        return self._fitted_detector().leave_one_out_scores()

    @property
    def weights(self) -> dict[str, float]:
        """The leave-one-out weight of each enabled scorer."""
        return self._fitted_detector().weights

    @property
    def used_fallback(self) -> bool:
        """True when k = 1 and the fallback scales replaced leave-one-out weights."""
        return self._fitted_detector().used_fallback


def _in_input_frame(prediction: Prediction, prepared: PreparedImage) -> Prediction:
    """``prediction`` with its map and its analysis's image, segments and labels moved back to the unregistered input."""
    if prepared.matrix is None:
        return prediction
    matrix, analysis = prepared.matrix, prediction.analysis
    return dataclasses.replace(
        prediction,
        map=None if prediction.map is None else unwarp(prediction.map, matrix),
        analysis=dataclasses.replace(
            analysis,
            rgb=prepared.original,
            lab=rgb_to_lab(prepared.original),
            segment_map=unwarp(analysis.segment_map, matrix, nearest=True),
            labels=unwarp(analysis.labels, matrix, nearest=True),
            covered=None,
        ),
    )


def _raw_arrays(raw: dict[str, Score], prepared: PreparedImage, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The arrays ``raw_scores_many`` stores of one image: raw scores, and maps moved back to the input and resized."""
    arrays = {}
    for name, score in raw.items():
        arrays[f"value.{name}"] = np.asarray(score.value, dtype=np.float64)
        if score.map is not None:
            moved = score.map if prepared.matrix is None else unwarp(score.map, prepared.matrix)
            arrays[f"map.{name}"] = resize_map(moved, size).astype(np.float32)
    return arrays


def resize_map(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An anomaly map at (height, width) ``size``: area-averaged when shrinking, bilinear when enlarging."""
    shrink = size[0] * size[1] < anomaly_map.size
    return cv2.resize(anomaly_map, size[::-1], interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _image_list(images: Sequence[ImageInput]) -> Sequence[ImageInput]:
    """``images``, refusing one path or one image given where a sequence of them is expected."""
    if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim != 4):
        raise DataError(f"expected a list of images, got a single {type(images).__name__}; wrap it in a list: [image]")
    return images
