"""Frozen settings of the pipeline and the named presets ``paper``, ``fast`` and ``offline``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Literal

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
PATCH_SCORERS: tuple[str, ...] = ("class_agnostic", "class_aware", "foreground")  # the scorers with an anomaly map


def check_scorers(names: tuple[str, ...]) -> None:
    """Raise ``ConfigError`` unless ``names`` is a non-empty list of known scorer ids."""
    unknown = [s for s in names if s not in ALL_SCORERS]
    if unknown or not names:
        raise ConfigError(f"unknown scorer(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(ALL_SCORERS)}")


@dataclass(frozen=True)
class SegmenterConfig:
    """How images are cut into segments.

    Arguments:
      kind: ``"sam"`` (segment-anything automatic masks) or ``"colour_clusters"``
        (CIELAB colour clusters fitted on the references; needs no weights).
      sam_model: SAM backbone, one of ``vit_h``, ``vit_l``, ``vit_b``.
      points_per_side: SAM's grid of point prompts per image side.
      min_area: segments smaller than this fraction of the image are dropped.
      n_colours: number of colour clusters of the offline segmenter.
    """

    kind: Literal["sam", "colour_clusters"] = "sam"
    sam_model: str = "vit_b"
    points_per_side: int = 32
    min_area: float = 0.001
    n_colours: int = 8


@dataclass(frozen=True)
class EmbedderConfig:
    """How patch features are computed.

    Arguments:
      kind: ``"dinov2"`` (a DINOv2 ViT through transformers) or ``"handcrafted"``
        (colour and gradient statistics; needs no weights).
      model_id: Hugging Face id of the DINOv2 checkpoint.
      image_size: long side of the working resolution in pixels, a multiple of ``patch_size``.
      patch_size: side of one patch in pixels (14 for DINOv2).
      neighbour_weight: weight of the neighbour-layout block of the handcrafted
        descriptor (see ``HandcraftedEmbedder``; 0 leaves it out).
      position_weight: weight of the patch-position block of the handcrafted
        descriptor (see ``HandcraftedEmbedder``; 0 leaves it out); DINOv2
        features carry position through their own positional embeddings.
    """

    kind: Literal["dinov2", "handcrafted"] = "dinov2"
    model_id: str = "facebook/dinov2-small"
    image_size: int = 448
    patch_size: int = 14
    neighbour_weight: float = 0.0
    position_weight: float = 0.0


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that defines one run of the pipeline.

    Arguments:
      name: preset name, for result files.
      segmenter: segmentation settings.
      embedder: patch-feature settings.
      alignment: ``"propagation"`` (patch-affinity label propagation snapped to
        segments), ``"hungarian"`` (matching of segment descriptors) or
        ``"segmenter"`` (the class ids a class-aware segmenter gives: the colour
        ids of the ``colour_clusters`` segmenter, consistent across images by
        construction).
      scorers: ids of the enabled scorers (see ``ALL_SCORERS``).
      input_size: (height, width) every input is resized to before anything else
        (the VAND 2025 protocol uses 256×256), or None to keep the image's size.
    """

    name: str
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    alignment: Literal["propagation", "hungarian", "segmenter"] = "propagation"
    scorers: tuple[str, ...] = DEFAULT_SCORERS
    input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        check_scorers(self.scorers)
        if self.alignment not in ALIGNMENTS:
            raise ConfigError(f"unknown alignment {self.alignment!r}; choose from {', '.join(ALIGNMENTS)}")
        if self.alignment == "segmenter" and self.segmenter.kind != "colour_clusters":
            raise ConfigError("alignment 'segmenter' needs the colour_clusters segmenter; SAM segments carry no class ids")
        if self.embedder.image_size % self.embedder.patch_size:
            raise ConfigError(
                f"image_size {self.embedder.image_size} is not a multiple of patch_size {self.embedder.patch_size}"
            )

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """Working resolution (height, width) for an input of the given size.

        The long side becomes ``embedder.image_size``; the short side keeps the
        aspect ratio, rounded to a multiple of ``embedder.patch_size``.
        """
        size, patch = self.embedder.image_size, self.embedder.patch_size
        scale = size / max(height, width)
        short = lambda side: max(patch, round(side * scale / patch) * patch)  # noqa: E731
        return (size, short(width)) if height >= width else (short(height), size)

    def with_scorers(self, scorers: tuple[str, ...]) -> "PipelineConfig":
        """A copy with other scorers enabled (model settings unchanged)."""
        return dataclasses.replace(self, scorers=tuple(scorers))

    def to_dict(self) -> dict:
        """Plain-JSON form, for result files."""
        return dataclasses.asdict(self)

    def model_key(self) -> str:
        """A stable string of the settings that change the cached model outputs."""
        return json.dumps(
            {"segmenter": dataclasses.asdict(self.segmenter), "embedder": dataclasses.asdict(self.embedder)},
            sort_keys=True,
        )


PRESETS: dict[str, PipelineConfig] = {
    "paper": PipelineConfig(
        name="paper",
        segmenter=SegmenterConfig(kind="sam", sam_model="vit_h"),
        embedder=EmbedderConfig(kind="dinov2", model_id="facebook/dinov2-giant", image_size=518),
    ),
    "fast": PipelineConfig(
        name="fast",
        segmenter=SegmenterConfig(kind="sam", sam_model="vit_b"),
        embedder=EmbedderConfig(kind="dinov2", model_id="facebook/dinov2-small", image_size=448),
    ),
    "offline": PipelineConfig(
        name="offline",
        segmenter=SegmenterConfig(kind="colour_clusters"),
        # position_weight 6: measured on juice_bottle (k = 4, seeds 42/0/1234),
        # class_agnostic image AUROC 0.65 -> 0.86, default ensemble 0.77 -> 0.85;
        # neighbour_weight 1 (each appearance block counts the same): default
        # ensemble 0.864 -> 0.876, F1-max 0.905 -> 0.917. position_weight 8
        # instead of 6: chosen by experiments/cross_validate.py over 4/6/8
        # (with neighbour_weight 0/1, 6/8/10 colours and the scorer settings)
        embedder=EmbedderConfig(kind="handcrafted", image_size=448, neighbour_weight=1.0, position_weight=8.0),
        alignment="segmenter",
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
