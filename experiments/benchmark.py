"""Speed and memory of each stage, per preset, and a projection of the full VAND 2025 protocol.

Example::

    python experiments/benchmark.py --presets offline fast --random-weights --images 2 --out runs/benchmark
    python experiments/benchmark.py --presets paper fast --random-weights --device cuda --images 16 --out runs/benchmark
    python experiments/benchmark.py --run-memory --out runs/benchmark_run
    python experiments/benchmark.py --rerun --baseline /tmp/loco_ad_main --out runs/benchmark_rerun

Every component is built by ``loco_ad.build`` from the preset (then the
``--config`` file and ``--set`` overrides), exactly as the pipeline builds it. ``--random-weights`` builds SAM
and DINOv2 at their real size untrained, so nothing is read or downloaded;
time and memory are those of the trained models, except SAM's mask
post-processing, which depends on how many masks pass its quality thresholds
(random weights give few, trained weights tens), so the SAM figure is a lower
bound by that part. Without it the weights come through ``loco_ad.models``.

Stages, on ``--images`` copies (shifted) of one image at the preset's working
resolution: ``register`` per image onto the first copy (estimate and warp; when
the preset registers), ``segment`` per image (and ``segment_fit`` per reference set for the
colour segmenter), ``embed`` of all images in the embedder's batches (bf16 on
CUDA; the first batch is a warm-up and not timed), ``imagenet`` per image (the
``imagenet`` scorer's network, on the CPU, when the preset sums it), ``align`` per image. Then
the detector at each k on synthetic analyses with the preset's patch grid and
feature size (scorer cost depends on sizes, not content): ``fit`` (every
enabled scorer and its leave-one-out weight) and ``score`` per test image (the
synthetic analyses share one image, whose ``imagenet`` features are computed once: that cost is the stage's).

The projection adds these up for the VAND 2025 protocol on MVTec LOCO AD:
its 1,568 test images and at most 24 drawn references per category (8 per
seed, the draws of one seed being nested) go once through the models, and each
of the 60 fits (5 categories × 3 seeds × 4 k) scores its category's test
images (a reference-dependent segmenter segments them again for every fit; with
registration every fit registers them onto its first reference and runs them
through the models again).
Times add up as if on one thread; the pipeline aligns and scores test images on
all CPU cores (when the patch banks are not on a GPU), so the fits part is an
upper bound there.

Memory: peak resident set size of the process during the stage (sampled from
``/proc/self/statm`` every 5 ms; elsewhere the process-lifetime peak from
``resource``), and on CUDA ``torch.cuda.max_memory_allocated``.

Writes OUT/stages.csv, OUT/detector.csv and OUT/projection.csv and prints them.

``--run-memory`` measures instead the whole evaluation, ``python -m loco_ad.run``
(``RUN_ARGS``: juice_bottle, k = 1, 2, 4, 8, seeds 42/0/1234, offline preset) as a
child process, on the shared subset (93 test images) and on a larger test set
built for the measurement in a temporary folder (removed afterwards, never in the
repository): the subset's test images ``--test-repeats`` times under new names
(hard links, or copies across file systems, with their ground truth) plus the
``--extra-good`` images as good test images (3 × 93 + 80 = 359). Prints and
writes OUT/run_memory.csv: test images, wall seconds and the child's peak
resident set size (``os.wait4``), and the ratio of the peaks.

``--rerun`` measures re-runs of ``python -m loco_ad.run`` on the shared subset
(``RUN_ARGS``) with a new, empty cache folder (in a temporary folder, removed
afterwards): ``cold`` (empty cache), ``warm`` (the same command again),
``ensemble`` (``ENSEMBLE_ARGS``: other cap and combination) and ``scorers``
(``SCORER_ARGS``: two of the three default scorers), each on the caches the
runs before it left. With ``--baseline DIR`` (a checkout of other code, e.g.
``git worktree add /tmp/loco_ad_main main``) the same four runs are made with
that code first (``PYTHONPATH``), side by side in one table. Prints and writes
OUT/rerun.csv: code, run, wall and CPU (user + system) seconds of the child,
its peak resident set size, both times as a fraction of that code's cold run,
whether its scores.csv and metrics.csv are byte-identical to the cold run's
(for ``warm``) and to the baseline's same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from loco_ad.analysis import ImageAnalysis
from loco_ad.build import build_detector, build_embedder, build_registration, build_scorer, build_segmenter, segmenter_class
from loco_ad.cli import ArgumentParser, add_config_argument, device, output_folder, run_main, settings_from_file
from loco_ad.config import PRESETS, PipelineConfig, apply_overrides, get_preset
from loco_ad.errors import ConfigError
from loco_ad.io import ResultSet, write_csv
from loco_ad.stages.align import align, patch_grid_labels
from loco_ad.stages.cielab import rgb_to_lab

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_IMAGE = SHARED_DATA / "mvtec_loco_subset" / "juice_bottle" / "train" / "good" / "000.png"
RUN_ARGS = ("--category", "juice_bottle", "--shots", "1", "2", "4", "8", "--preset", "offline", "--quiet")
ENSEMBLE_ARGS = ("--set", "ensemble.cap=3", "--set", "ensemble.combination=log")
SCORER_ARGS = ("--scorers", "class_agnostic,foreground")
RERUNS = {"cold": (), "warm": (), "ensemble": ENSEMBLE_ARGS, "scorers": SCORER_ARGS}
SHOTS = (1, 2, 4, 8)
N_CLASSES = 6  # synthetic analyses: background + 5 classes
VAND_TEST_IMAGES = 1568  # MVTec LOCO AD test split, five categories
VAND_REFERENCES = 5 * 3 * 8  # at most 8 distinct references per (category, seed)
VAND_FITS_PER_K = 5 * 3  # categories × seeds


def _cuda(device: str) -> bool:
    return device.startswith("cuda")


def _synchronize(device: str) -> None:
    if _cuda(device):
        import torch

        torch.cuda.synchronize()


class PeakMemory:
    """Peak CPU resident memory (and CUDA allocated memory) while the block runs, in MiB."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.cpu_mib = 0.0
        self.cuda_mib = float("nan")

    @staticmethod
    def _rss_mib() -> float:
        try:
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
        except OSError:  # not Linux: lifetime peak (KiB on Linux, bytes on macOS)
            scale = 2**20 if sys.platform == "darwin" else 2**10
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale

    @contextmanager
    def measure(self) -> Iterator["PeakMemory"]:
        if _cuda(self.device):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        done = threading.Event()
        peak = [self._rss_mib()]

        def sample() -> None:
            while not done.wait(0.005):
                peak[0] = max(peak[0], self._rss_mib())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            if _cuda(self.device):
                import torch

                torch.cuda.synchronize()
                self.cuda_mib = torch.cuda.max_memory_allocated() / 2**20
            done.set()
            sampler.join()
            self.cpu_mib = max(peak[0], self._rss_mib())


def timed(device: str, work: Callable[[], object]) -> tuple[object, float, float, float]:
    """Run ``work`` once; (its result, seconds, peak CPU RSS MiB, peak CUDA MiB)."""
    memory = PeakMemory(device)
    with memory.measure():
        start = time.perf_counter()
        result = work()
        _synchronize(device)
        seconds = time.perf_counter() - start
    return result, seconds, memory.cpu_mib, memory.cuda_mib


def benchmark_images(config: PipelineConfig, count: int, image: Path | None) -> list[np.ndarray]:
    """``count`` RGB images at the preset's working resolution: the given or shared image, else smoothed noise."""
    path = image or (SHARED_IMAGE if SHARED_IMAGE.is_file() else None)
    if path is not None:
        from loco_ad.data import read_image

        rgb = read_image(path)
    else:
        rgb = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (800, 400, 3), np.uint8), (0, 0), 8)
    height, width = config.working_size(*rgb.shape[:2])
    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(np.roll(rgb, 3 * shift, axis=1)) for shift in range(count)]


def stage_row(config: PipelineConfig, stage: str, images: int, measured: tuple, build_s: float = float("nan")) -> dict:
    """One row of the stage table: seconds per image of one ``timed`` call over ``images`` images."""
    _, seconds, cpu_mib, cuda_mib = measured
    return dict(preset=config.name, stage=stage, images=images, s_per_image=seconds / images,
                cpu_peak_mib=cpu_mib, cuda_peak_mib=cuda_mib, build_s=build_s)


def bench_models(config: PipelineConfig, images: Sequence[np.ndarray], device: str, random_weights: bool) -> tuple[list[dict], list]:
    """Rows of the registration, segmenter, embedder and alignment stages, and the segment maps and patch grids they produced."""
    rows = []
    registration = build_registration(config)
    if registration is not None:
        registration.fit(images[0])
        for rgb in images:
            rows.append(stage_row(config, "register", 1, timed("cpu", lambda: registration.register(rgb))))
    start = time.perf_counter()
    segmenter = build_segmenter(config, device=device, random_weights=random_weights)
    build_s = time.perf_counter() - start
    if segmenter.reference_dependent:
        rows.append(stage_row(config, "segment_fit", 1, timed(device, lambda: segmenter.fit(images)), build_s))
    maps = []
    for rgb in images:
        measured = timed(device, lambda: segmenter.segment(rgb))
        maps.append(measured[0])
        rows.append(stage_row(config, "segment", 1, measured, build_s))

    start = time.perf_counter()
    embedder = build_embedder(config, device=device, random_weights=random_weights)
    build_s = time.perf_counter() - start
    if _cuda(device):
        embedder.embed(list(images[:1]))  # warm-up: CUDA context, kernels, autocast
    measured = timed(device, lambda: embedder.embed(list(images)))
    rows.append(stage_row(config, "embed", len(images), measured, build_s))
    patches = measured[0]

    if "imagenet" in config.ensemble.scorers:  # its network's forward pass, once per distinct image
        scorer = build_scorer("imagenet", config)
        analyses = [_analysis(rgb, segment_map, segment_map, grid, int(segment_map.max()) + 1)
                    for rgb, segment_map, grid in zip(images, maps, patches)]
        start = time.perf_counter()
        scorer.features(dataclasses.replace(analyses[0], rgb=np.zeros_like(images[0])))  # loads the network
        build_s = time.perf_counter() - start
        for analysis in analyses:
            rows.append(stage_row(config, "imagenet", 1, timed("cpu", lambda: scorer.features(analysis)), build_s))

    if config.alignment.method != "segmenter":
        reference = _analysis(images[0], maps[0], maps[0], patches[0], int(maps[0].max()) + 1)
        for rgb, segment_map, grid in zip(images, maps, patches):
            lab = rgb_to_lab(rgb)
            rows.append(stage_row(config, "align", 1, timed("cpu", lambda: align(reference, segment_map, grid, lab, config.alignment))))
    return rows, patches


def _analysis(rgb: np.ndarray, segment_map: np.ndarray, labels: np.ndarray, patches: np.ndarray, n_classes: int) -> ImageAnalysis:
    return ImageAnalysis(rgb=rgb, lab=rgb_to_lab(rgb), segment_map=segment_map, labels=labels, patches=patches,
                         patch_labels=patch_grid_labels(labels, patches.shape[:2]), n_classes=n_classes)


def synthetic_analyses(rgb: np.ndarray, grid: tuple[int, int], dim: int, count: int, seed: int = 0) -> list[ImageAnalysis]:
    """``count`` analyses of ``rgb``'s size: vertical class bands on a central box, jittered; random unit features."""
    rng = np.random.default_rng(seed)
    height, width = rgb.shape[:2]
    analyses = []
    for _ in range(count):
        dy, dx = rng.integers(-4, 5, 2)
        labels = np.zeros((height, width), np.int32)
        top, left = height // 8 + dy, width // 8 + dx
        box_w = 3 * width // 4
        for cls in range(1, N_CLASSES):
            band = slice(left + (cls - 1) * box_w // (N_CLASSES - 1), left + cls * box_w // (N_CLASSES - 1))
            labels[top : top + 3 * height // 4, band] = cls
        patches = rng.standard_normal((*grid, dim)).astype(np.float32)
        patches /= np.linalg.norm(patches, axis=-1, keepdims=True)
        analyses.append(_analysis(rgb, labels, labels, patches, N_CLASSES))
    return analyses


def bench_detector(config: PipelineConfig, rgb: np.ndarray, grid: tuple[int, int], dim: int, gpu: bool) -> list[dict]:
    """Rows of the detector at each k: fit (scorers and leave-one-out weights) and score per test image."""
    analyses = synthetic_analyses(rgb, grid, dim, max(SHOTS) + 4)
    tests, pool = analyses[:4], analyses[4:]
    rows = []
    for k in SHOTS:
        start = time.perf_counter()
        detector = build_detector(config.for_references(k), gpu=gpu).fit(pool[:k])
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        for test in tests:
            detector.score(test)
        rows.append(dict(preset=config.name, k=k, scorers="+".join(detector.scorer_names), patches=grid[0] * grid[1],
                         dim=dim, fit_s=fit_s, score_s_per_image=(time.perf_counter() - start) / len(tests)))
    return rows


def projection(config: PipelineConfig, stages: Sequence[dict], detector: Sequence[dict]) -> dict:
    """Projected minutes of the VAND 2025 protocol, and seconds per image through all stages, from the measured times.

    Every image goes once through the embedder (and a per-image segmenter); each
    of the 15 fits per k fits the detector (and a reference-dependent segmenter)
    and scores its category's test images: 3 seeds × 1,568 test images per k;
    with registration, each fit registers them and runs them through the models again.
    """
    per_image = {stage: float(np.mean([r["s_per_image"] for r in stages if r["stage"] == stage] or [0.0]))
                 for stage in ("register", "segment", "segment_fit", "embed", "imagenet", "align")}
    per_image_segment = segmenter_class(config).reference_dependent
    models_per_image = per_image["embed"] + per_image["imagenet"] + (0.0 if per_image_segment else per_image["segment"])
    model_s = (VAND_TEST_IMAGES + VAND_REFERENCES) * models_per_image
    fits_s = 0.0
    for row in detector:
        per_test = row["score_s_per_image"] + per_image["align"] + (per_image["segment"] if per_image_segment else 0.0)
        if config.registration.motion != "none":
            per_test += per_image["register"] + models_per_image
        fits_s += VAND_FITS_PER_K * (row["fit_s"] + per_image["segment_fit"]) + 3 * VAND_TEST_IMAGES * per_test
    score_s = float(np.mean([row["score_s_per_image"] for row in detector]))
    all_stages = sum(per_image[stage] for stage in ("register", "segment", "embed", "imagenet", "align")) + score_s
    return dict(preset=config.name, s_per_image_all_stages=all_stages, model_min=model_s / 60, fits_min=fits_s / 60,
                total_min=(model_s + fits_s) / 60)


def _link(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy across file systems)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def larger_test_set(subset: Path, extra_good: Path, repeats: int, root: Path, category: str = "juice_bottle") -> Path:
    """A data root under ``root`` with ``category``'s train split, its test split ``repeats`` times
    (copies ``r<i>_<name>``, ground truth included) and ``extra_good``'s images as good test images."""
    source, target = subset / category, root / category
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if path.is_file() and relative.parts[0] not in ("test", "ground_truth"):
            _link(path, target / relative)
    for repeat in range(repeats):
        prefix = f"r{repeat}_"
        for path in (source / "test").rglob("*.png"):
            _link(path, target / "test" / path.parent.name / f"{prefix}{path.name}")
        for path in (source / "ground_truth").rglob("*.png"):
            relative = path.relative_to(source / "ground_truth")
            _link(path, target / "ground_truth" / relative.parts[0] / f"{prefix}{relative.parts[1]}" / relative.parts[2])
    for index, path in enumerate(sorted(extra_good.glob("*.png"))):
        _link(path, target / "test" / "good" / f"extra_{index:03d}.png")
    return root


def measure_run(data_root: Path, out: Path, extra: Sequence[str] = (), code: Path | None = None) -> dict:
    """Wall and CPU (user + system) seconds and peak RSS (MiB) of one ``python -m loco_ad.run`` child on ``data_root``.

    ``code``: the checkout whose ``loco_ad`` the child imports (default: the one on ``PYTHONPATH``).
    """
    command = [sys.executable, "-m", "loco_ad.run", "--data-root", str(data_root), *RUN_ARGS, "--out", str(out), *extra]
    # PYTHONSAFEPATH: python -m would import the loco_ad of the working directory before PYTHONPATH's
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONSAFEPATH": "1"} if code is not None else None
    start = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}; see {out.with_suffix('.log')}")
    test_images = len(list((data_root / "juice_bottle" / "test").rglob("*.png")))
    scale = 2**20 if sys.platform == "darwin" else 2**10
    return dict(test_images=test_images, wall_s=seconds, cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mib=usage.ru_maxrss / scale)


def _same_results(out: Path, other: Path) -> bool:
    """Whether two result folders hold byte-identical scores.csv and metrics.csv."""
    return all((out / name).read_bytes() == (other / name).read_bytes() for name in ("scores.csv", "metrics.csv"))


def bench_reruns(subset: Path, out: Path, baseline: Path | None) -> list[dict]:
    """``measure_run`` cold, warm and with ensemble-only changes (``RERUNS``), each run by each code in turn
    (the baseline's first), each code with its own new cache folder; rows of OUT/rerun.csv."""
    codes = {"baseline": baseline} if baseline else {}
    codes["this"] = Path(__file__).resolve().parents[1]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="loco_ad_rerun_cache_") as caches:
        for run, extra in RERUNS.items():
            for code, root in codes.items():
                target = out / f"{code}_{run}"
                cache = Path(caches) / code
                row = dict(code=code, run=run, **measure_run(subset, target, (*extra, "--cache-dir", str(cache)), root))
                cold = next((r for r in rows if r["code"] == code), row)
                row["wall_vs_cold"], row["cpu_vs_cold"] = row["wall_s"] / cold["wall_s"], row["cpu_s"] / cold["cpu_s"]
                row["same_as_cold"] = _same_results(target, out / f"{code}_cold") if run == "warm" else ""
                row["same_as_baseline"] = _same_results(target, out / f"baseline_{run}") if code == "this" and baseline else ""
                rows.append(row)
    return sorted(rows, key=lambda row: row["code"] != "baseline")


def bench_run_memory(subset: Path, extra_good: Path, repeats: int, out: Path) -> list[dict]:
    """``measure_run`` on the subset and on ``larger_test_set``; rows of OUT/run_memory.csv."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [measure_run(subset, out / "run_subset")]
    with tempfile.TemporaryDirectory(prefix="loco_ad_larger_") as folder:
        larger = larger_test_set(subset, extra_good, repeats, Path(folder))
        rows.append(measure_run(larger, out / "run_larger"))
    for row in rows:
        row["peak_ratio"] = row["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    return rows


def print_table(rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Print rows as an aligned text table."""
    text = [[f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in text)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in text:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python experiments/benchmark.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["fast"], choices=list(PRESETS))
    add_config_argument(parser)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting of every preset")
    parser.add_argument("--random-weights", action="store_true", help="SAM and DINOv2 untrained at real size (nothing read or downloaded)")
    parser.add_argument("--images", type=int, default=None, help="images per preset (default 1 on CPU, 16 on CUDA)")
    parser.add_argument("--image", type=Path, default=None, help="image to run on (default: a shared juice_bottle image)")
    parser.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=output_folder, default=Path("runs/benchmark"))
    parser.add_argument("--run-memory", action="store_true", help="measure python -m loco_ad.run instead (time, peak memory)")
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA / "mvtec_loco_subset", help="with --run-memory: the subset")
    parser.add_argument("--extra-good", type=Path, default=SHARED_DATA / "juice_bottle_extra_good" / "good",
                        help="with --run-memory: good images added to the larger test set")
    parser.add_argument("--test-repeats", type=int, default=3, help="with --run-memory: copies of the test split in the larger set")
    parser.add_argument("--rerun", action="store_true", help="measure cold, warm and ensemble-only re-runs of python -m loco_ad.run")
    parser.add_argument("--baseline", type=Path, default=None, help="with --rerun: a checkout of other code measured first, side by side")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        configs = [apply_overrides(settings_from_file(get_preset(name), args.config), args.set) for name in args.presets]
        results = ResultSet(args.out, inputs={"--image": args.image, "--config file": args.config,
                                              "--data-root": args.data_root if args.run_memory or args.rerun else None,
                                              "--extra-good": args.extra_good if args.run_memory else None})
        results.check()
        if args.baseline is not None and not (args.rerun and (args.baseline / "loco_ad" / "__init__.py").is_file()):
            raise ConfigError(f"--baseline needs --rerun and a checkout with a loco_ad package; {args.baseline} is not one")
        if args.rerun:
            with results as staging:
                rows = bench_reruns(args.data_root, staging, args.baseline)
                write_csv(staging / "rerun.csv", rows)
            print_table(rows, ["code", "run", "wall_s", "cpu_s", "peak_rss_mib", "wall_vs_cold", "cpu_vs_cold", "same_as_cold",
                              "same_as_baseline"])
            print(f"\nwrote {args.out}/")
            return 0
        if args.run_memory:
            with results as staging:
                rows = bench_run_memory(args.data_root, args.extra_good, args.test_repeats, staging)
                write_csv(staging / "run_memory.csv", rows)
            print_table(rows, ["test_images", "wall_s", "peak_rss_mib", "peak_ratio"])
            print(f"\nwrote {args.out}/")
            return 0
        import torch

        from loco_ad.build import banks_on_gpu
        from loco_ad.models import resolve_device

        device = resolve_device(args.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        count = args.images or (16 if _cuda(device) else 1)
        stage_rows, detector_rows, projections = [], [], []
        for config in configs:
            images = benchmark_images(config, count, args.image)
            rows, patches = bench_models(config, images, device, args.random_weights)
            detector = bench_detector(config, images[0], patches[0].shape[:2], patches[0].shape[2], banks_on_gpu(device))
            stage_rows += rows
            detector_rows += detector
            projections.append(projection(config, rows, detector))
        print(f"device {device}, torch threads {torch.get_num_threads()}, {count} image(s) per preset")
        print_table(stage_rows, ["preset", "stage", "images", "s_per_image", "cpu_peak_mib", "cuda_peak_mib", "build_s"])
        print()
        print_table(detector_rows, ["preset", "k", "scorers", "patches", "dim", "fit_s", "score_s_per_image"])
        print("\nVAND 2025 protocol projection (1,568 test images, 60 fits):")
        print_table(projections, ["preset", "s_per_image_all_stages", "model_min", "fits_min", "total_min"])
        with results as staging:
            write_csv(staging / "stages.csv", stage_rows)
            write_csv(staging / "detector.csv", detector_rows)
            write_csv(staging / "projection.csv", projections)
        print(f"\nwrote {args.out}/")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
