"""Speed and memory of each stage, per preset, at real model sizes with random weights.

Example::

    python experiments/benchmark.py --presets fast offline --images 1 --device auto --out runs/benchmark

For each preset, the segmenter and the embedder are built at their real size
with random weights (SAM from ``segment_anything.sam_model_registry`` without a
checkpoint, DINOv2 from ``loco_ad.models.DINOV2_CONFIGS``), so nothing is
downloaded, and run on ``--images`` images at the preset's working resolution
(SAM resizes to its 1024 px input itself). Times and memory are those of the
trained models, except SAM's mask post-processing, which depends on how many
masks pass its quality thresholds: random weights give few or none, trained
weights tens, so the SAM figure is a lower bound by that (small) part.

Then each scorer is timed against k: ``fit`` on k references, ``score`` of one
test image and the leave-one-out weight (k ≥ 2), on synthetic analyses with
the preset's patch grid and feature size (scorer cost depends on the sizes,
not on the content).

Memory: peak resident set size of the process during the stage (sampled from
``/proc/self/statm`` every 5 ms; elsewhere the process-lifetime peak from
``resource``), and on CUDA the peak of ``torch.cuda.max_memory_allocated``.

Writes OUT/stages.csv and OUT/scorers.csv and prints both as tables.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from skimage.color import rgb2lab

from loco_ad.analysis import ImageAnalysis
from loco_ad.config import ALL_SCORERS, PRESETS, PipelineConfig
from loco_ad.io import write_csv
from loco_ad.models import build_dinov2, resolve_device
from loco_ad.stages import Embedder, Segmenter

SHARED_IMAGE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_loco_subset" / "juice_bottle" / "train" / "good" / "000.png"
)
SHOTS = (1, 2, 4, 8)
N_CLASSES = 6  # synthetic analyses: background + 5 classes


class PeakMemory:
    """Peak CPU resident memory (and CUDA allocated memory) while the block runs, in MiB."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
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
        if self.cuda:
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
            if self.cuda:
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
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return result, seconds, memory.cpu_mib, memory.cuda_mib


def benchmark_images(config: PipelineConfig, count: int, image: Path | None) -> list[np.ndarray]:
    """``count`` RGB images at the preset's working resolution: the given or shared image, else seeded noise."""
    path = image or (SHARED_IMAGE if SHARED_IMAGE.is_file() else None)
    if path is not None:
        from loco_ad.data import read_image

        rgb = read_image(path)
    else:
        rgb = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (800, 400, 3), np.uint8), (0, 0), 8)
    height, width = config.working_size(*rgb.shape[:2])
    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(np.roll(rgb, shift, axis=1)) for shift in range(count)]


def random_weight_segmenter(config: PipelineConfig, device: str) -> Segmenter:
    """The preset's segmenter at real size with random weights."""
    settings = config.segmenter
    if settings.kind == "sam":
        from segment_anything import sam_model_registry

        from loco_ad.stages.segment import SamSegmenter

        sam = sam_model_registry[settings.sam_model](checkpoint=None).to(device).eval()
        return SamSegmenter(sam, points_per_side=settings.points_per_side, min_area=settings.min_area)
    from loco_ad.stages.colour_segment import ColourClusterSegmenter

    return ColourClusterSegmenter(n_colours=settings.n_colours, min_area=settings.min_area)


def random_weight_embedder(config: PipelineConfig, device: str) -> Embedder:
    """The preset's embedder at real size with random weights."""
    settings = config.embedder
    if settings.kind == "dinov2":
        from loco_ad.stages.embed import Dinov2Embedder

        return Dinov2Embedder(build_dinov2(settings.model_id), patch_size=settings.patch_size, device=device)
    from loco_ad.stages.handcrafted import HandcraftedEmbedder

    return HandcraftedEmbedder(patch_size=settings.patch_size)


def stage_row(config: PipelineConfig, stage: str, image: object, rgb: np.ndarray, build_s: float, measured: tuple) -> dict:
    """One row of the stage table from ``timed``'s result."""
    _, seconds, cpu_mib, cuda_mib = measured
    return dict(preset=config.name, stage=stage, image=image, height=rgb.shape[0], width=rgb.shape[1],
                seconds=seconds, cpu_peak_mib=cpu_mib, cuda_peak_mib=cuda_mib, build_s=build_s)


def bench_segmenter(config: PipelineConfig, images: Sequence[np.ndarray], device: str) -> list[dict]:
    """Rows of the segmenter: its fit on all images when it needs references, then one per image."""
    start = time.perf_counter()
    segmenter = random_weight_segmenter(config, device)
    build_s = time.perf_counter() - start
    rows = []
    if segmenter.reference_dependent:
        rows.append(stage_row(config, "segment_fit", "all", images[0], build_s, timed(device, lambda: segmenter.fit(images))))
    for index, rgb in enumerate(images):
        rows.append(stage_row(config, "segment", index, rgb, build_s, timed(device, lambda: segmenter.segment(rgb))))
    return rows


def bench_embedder(config: PipelineConfig, images: Sequence[np.ndarray], device: str) -> tuple[list[dict], np.ndarray]:
    """Rows of the embedder, one per image, and the patch features of the last image."""
    start = time.perf_counter()
    embedder = random_weight_embedder(config, device)
    build_s = time.perf_counter() - start
    rows = []
    for index, rgb in enumerate(images):
        measured = timed(device, lambda: embedder.embed([rgb])[0])
        rows.append(stage_row(config, "embed", index, rgb, build_s, measured))
    return rows, measured[0]


def synthetic_analyses(rgb: np.ndarray, grid: tuple[int, int], dim: int, count: int, seed: int = 0) -> list[ImageAnalysis]:
    """``count`` analyses of ``rgb``'s size: vertical class bands on a central box, jittered; random unit features."""
    from loco_ad.stages.align import patch_grid_labels

    rng = np.random.default_rng(seed)
    height, width = rgb.shape[:2]
    lab = rgb2lab(rgb).astype(np.float32)
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
        analyses.append(
            ImageAnalysis(rgb=rgb, lab=lab, segment_map=labels, labels=labels, patches=patches,
                          patch_labels=patch_grid_labels(labels, grid), n_classes=N_CLASSES)
        )
    return analyses


def bench_scorers(config: PipelineConfig, rgb: np.ndarray, grid: tuple[int, int], dim: int) -> list[dict]:
    """Rows of fit / score / leave-one-out time per scorer and k."""
    from loco_ad.features import make_scorer
    from loco_ad.weights import leave_one_out_weight

    analyses = synthetic_analyses(rgb, grid, dim, max(SHOTS) + 1)
    test, pool = analyses[0], analyses[1:]
    rows = []
    for name in ALL_SCORERS:
        for k in SHOTS:
            references = pool[:k]
            start = time.perf_counter()
            scorer = make_scorer(name).fit(references)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            scorer.score(test)
            score_s = time.perf_counter() - start
            start = time.perf_counter()
            if k >= 2:
                leave_one_out_weight(lambda: make_scorer(name), references)
            loo_s = time.perf_counter() - start if k >= 2 else float("nan")
            rows.append(dict(preset=config.name, scorer=name, k=k, patches=grid[0] * grid[1], dim=dim,
                             fit_s=fit_s, score_s=score_s, leave_one_out_s=loo_s))
    return rows


def print_table(rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Print rows as an aligned text table."""
    text = [[f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in text)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in text:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["fast"], choices=list(PRESETS))
    parser.add_argument("--images", type=int, default=None, help="images per preset (default 1 on CPU, 5 on CUDA)")
    parser.add_argument("--image", type=Path, default=None, help="image to run on (default: a shared juice_bottle image)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--stages", nargs="+", default=["segment", "embed"], choices=["segment", "embed"])
    parser.add_argument("--no-scorers", action="store_true", help="skip the scorer-versus-k timings (they need the embed stage)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    count = args.images or (5 if device.startswith("cuda") else 1)
    stage_rows, scorer_rows = [], []
    for name in args.presets:
        config = PRESETS[name]
        images = benchmark_images(config, count, args.image)
        if "segment" in args.stages:
            stage_rows += bench_segmenter(config, images, device)
        if "embed" in args.stages:
            rows, patches = bench_embedder(config, images, device)
            stage_rows += rows
            if not args.no_scorers:
                scorer_rows += bench_scorers(config, images[0], patches.shape[:2], patches.shape[2])
    print(f"device {device}, torch threads {torch.get_num_threads()}, {count} image(s) per preset")
    print_table(stage_rows, ["preset", "stage", "image", "height", "width", "seconds", "cpu_peak_mib", "cuda_peak_mib", "build_s"])
    write_csv(args.out / "stages.csv", stage_rows)
    if scorer_rows:
        print()
        print_table(scorer_rows, ["preset", "scorer", "k", "patches", "dim", "fit_s", "score_s", "leave_one_out_s"])
        write_csv(args.out / "scorers.csv", scorer_rows)
    print(f"\nwrote {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
