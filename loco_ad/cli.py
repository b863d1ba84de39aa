"""Command-line pieces shared by ``loco_ad.run``, ``loco_ad.predict`` and the experiments."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

from loco_ad.cache import AnalysisCache, default_cache_dir
from loco_ad.config import (
    ALIGNMENTS,
    KNOWN_SCORERS,
    DEFAULT_SCORERS,
    PRESETS,
    PipelineConfig,
    apply_overrides,
    apply_settings,
    get_preset,
    parse_scorers,
)
from loco_ad.data import (
    DATA_ENV,
    DEFAULT_SEEDS,
    DEFAULT_SHOTS,
    SAMPLE_ROOT,
    CategoryData,
    data_root,
    load_category,
    resolve_categories,
)
from loco_ad.errors import ConfigError, LocoAdError


MAX_SEED = 2**64 - 1  # the largest seed torch's generators take
DEVICES = "auto, cpu, cuda or cuda:N"


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line ``error: ...`` on stderr and exit code 2,
    like every other bad input (``--help`` still prints the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class Unique(argparse.Action):
    """Keep each value of a list option once, in the order first given (``--seeds 42 42`` runs seed 42 once)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None) -> None:
        setattr(namespace, self.dest, list(dict.fromkeys(values)))


def output_folder(text: str) -> Path:
    """An ``--out`` argument: a non-empty path (an empty one would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty path")
    return Path(text)


def seed(text: str) -> int:
    """A ``--seeds`` value: an integer from 0 to 2**64 - 1, the seeds torch's generators take."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must lie in 0 .. 2**64 - 1, got {text}")
    return value


def device(text: str) -> str:
    """A ``--device`` value: auto, cpu, cuda or cuda:N (whether a GPU is there is checked when the models load)."""
    if text not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", text):
        raise argparse.ArgumentTypeError(f"expected {DEVICES}, got {text!r}")
    return text


def describe_preset(config: PipelineConfig) -> str:
    """One line of what a preset runs, e.g. ``SAM vit_h + dinov2-giant @ 518 px (weights)``, for ``--help``."""
    segmenter, embedder = config.segmenter, config.embedder
    segments = f"SAM {segmenter.sam.model}" if segmenter.kind == "sam" else "colour clusters"
    features = embedder.dinov2.model_id.split("/")[-1] if embedder.kind == "dinov2" else "handcrafted descriptors"
    weights = "weights" if segmenter.kind == "sam" or embedder.kind == "dinov2" else "no weights"
    return f"{segments} + {features} @ {embedder.image_size} px ({weights})"


def add_pipeline_arguments(parser: argparse.ArgumentParser, default_preset: str = "paper") -> None:
    """Add --preset, --config, --scorers, --alignment, --set, --print-config, --weights-dir, --cache-dir, --no-cache, --device, --quiet."""
    group = parser.add_argument_group("pipeline")
    presets = "; ".join(f"{name}: {describe_preset(config)}" for name, config in PRESETS.items())
    group.add_argument("--preset", default=default_preset, help=f"model preset (default {default_preset}) — {presets}")
    add_config_argument(group)
    group.add_argument(
        "--scorers",
        help=f"comma-separated scorer ids from {', '.join(KNOWN_SCORERS)} (default: {','.join(DEFAULT_SCORERS)})",
    )
    group.add_argument("--alignment", choices=ALIGNMENTS, help="alignment strategy (default: the preset's)")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting, e.g. --set segmenter.sam.pred_iou_thresh=0.9 (repeatable; --print-config lists the keys)",
    )
    group.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration as JSON (a file --config reads back) and exit"
    )
    group.add_argument("--weights-dir", type=Path, help="folder with model weights (default: $LOCO_AD_WEIGHTS, then the HF/torch caches)")
    group.add_argument("--cache-dir", type=Path, help=f"analysis cache folder (default: $LOCO_AD_CACHE or {default_cache_dir()})")
    group.add_argument("--no-cache", action="store_true", help="keep model outputs in memory only")
    group.add_argument("--device", type=device, default="auto", help=f"{DEVICES} (default auto)")
    group.add_argument("--quiet", action="store_true", help="no progress bars")


def add_config_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add --config FILE (the settings of a YAML or JSON file, applied after the preset)."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML or JSON file of settings, the tree --print-config prints (whole or in part); "
        "applied after --preset, before --scorers, --alignment and --set",
    )


def read_settings(path: Path | None) -> dict:
    """The settings tree of a ``--config`` file (YAML, or JSON, which is YAML too); ``{}`` without one.

    Raises:
      ConfigError: the file cannot be read, is not YAML or does not hold a mapping.
    """
    if path is None:
        return {}
    import yaml

    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read ({getattr(error, 'strerror', None) or error})") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"config file {path} is not YAML or JSON{line}: {getattr(error, 'problem', None) or error}") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, as --print-config prints")
    return settings


def settings_from_file(config: PipelineConfig, path: Path | None) -> PipelineConfig:
    """``config`` with the settings of the ``--config`` file at ``path`` (unchanged without one); errors name the file."""
    settings = read_settings(path)
    try:
        return apply_settings(config, settings)
    except ConfigError as error:
        raise ConfigError(f"config file {path}: {error}") from None


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --data-root and --category (default: every category present)."""
    parser.add_argument("--data-root", help=f"MVTec LOCO AD root folder (default: ${DATA_ENV}, else the bundled sample)")
    parser.add_argument("--category", nargs="+", default=["all"], help="category folders (any folder of the data root holding train/good and test), or 'all' (default: every one)")


def add_evaluation_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    """Add --data-root, --category, --shots, --seeds and --out, as ``loco_ad.run`` and the ablation take them."""
    add_data_arguments(parser)
    parser.add_argument("--shots", nargs="+", type=int, action=Unique, default=list(DEFAULT_SHOTS), help="k values (default 1 2 4 8)")
    parser.add_argument("--seeds", nargs="+", type=seed, action=Unique, default=list(DEFAULT_SEEDS), help="draw seeds (default 42 0 1234)")
    parser.add_argument("--out", type=output_folder, default=Path(default_out), help=f"output folder (default {default_out})")


def print_summary(summary: dict[str, float], pipeline) -> None:
    """Print AUFC, normalised AUFC and mean F1-max of an evaluation, then the pipeline's cache hit count."""
    if math.isnan(summary["aufc"]):  # the area under the F1-max curve needs two k or more
        aufc = "AUFC n/a (one k)"
    else:
        aufc = f"AUFC {summary['aufc']:.4f}  normalised AUFC {summary['normalized_aufc']:.4f}"
    print(f"\n{aufc}  mean F1-max {summary['avg_image_score']:.4f}")
    if pipeline.cache is not None:
        print(f"cache: {pipeline.cache.hits} hits, {pipeline.cache.misses} misses ({pipeline.cache.root})")


def data_root_or_sample(value: str | None) -> Path:
    """The data root of ``--data-root`` or ``$LOCO_AD_DATA``; with neither, the bundled sample, said on stderr.

    Arguments:
      value: the ``--data-root`` argument, or None.
    Returns:
      the data root (``loco_ad.data.SAMPLE_ROOT`` for the sample).
    Raises:
      DataError: the given folder does not exist.
    """
    if value is None and not os.environ.get(DATA_ENV):
        print(f"no --data-root or ${DATA_ENV}: using the bundled sample {SAMPLE_ROOT} "
              "(a few MVTec LOCO juice_bottle images, CC BY-NC-SA 4.0)", file=sys.stderr)
        return SAMPLE_ROOT
    return data_root(value)


def data_inputs(root: Path, datasets: list[CategoryData]) -> dict[str, Path]:
    """The data root and category folders of a run, as ``io.ResultSet`` takes its inputs (no --out among them)."""
    return {"data root": root, **{f"category folder {data.name}": data.root for data in datasets}}


def datasets_from_args(args: argparse.Namespace) -> tuple[Path, list[CategoryData]]:
    """The data root of --data-root (or the sample, see ``data_root_or_sample``) and its --category datasets, listed."""
    root = data_root_or_sample(args.data_root)
    return root, [load_category(root, name) for name in resolve_categories(root, args.category)]


def config_from_args(args: argparse.Namespace, input_size: tuple[int, int] | None = None) -> PipelineConfig:
    """The configuration the parsed arguments describe.

    In order: the preset, the settings of the --config file, the command's
    ``input_size`` (if it fixes one), --scorers, --alignment, then each --set.
    Imports nothing heavy, so a bad value is reported before any model library loads.

    Arguments:
      args: parsed arguments of ``add_pipeline_arguments``.
      input_size: (height, width) the command resizes every image to before the model, or None to leave it to the settings.
    Returns:
      the configuration; ``ConfigError`` for an unknown preset, scorer or key, or a bad value.
    """
    config = settings_from_file(get_preset(args.preset), args.config)
    if input_size is not None:
        config = dataclasses.replace(config, input_size=input_size)
    if args.scorers is not None:  # an empty --scorers is an error, not the default
        config = config.with_scorers(parse_scorers(args.scorers))
    if args.alignment:
        config = dataclasses.replace(config, alignment=dataclasses.replace(config.alignment, method=args.alignment))
    return apply_overrides(config, args.set)


def printed_config(args: argparse.Namespace, config: PipelineConfig) -> bool:
    """With --print-config, print ``config`` as JSON and return True (the command then exits 0)."""
    if args.print_config:
        print(config.to_json())
    return args.print_config


def pipeline_from_args(args: argparse.Namespace, config: PipelineConfig):
    """The ``Pipeline`` of ``config`` with the cache, weights folder, device and progress the arguments ask for."""
    from loco_ad.pipeline import Pipeline  # the stages load only when a command needs them

    cache = None if args.no_cache else AnalysisCache(args.cache_dir or default_cache_dir())
    return Pipeline(config, cache=cache, weights_dir=args.weights_dir, device=args.device, progress=not args.quiet)


def run_main(body: Callable[[], int]) -> int:
    """Run a CLI body: a ``LocoAdError`` becomes one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return body()
    except LocoAdError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished images are in the cache and a re-run resumes from them", file=sys.stderr)
        return 130
