"""The official VAND 2025 evaluator on a fork made by ``vand2025.py --package``, against ``vand2025.py``, side by side.

Example::

    python experiments/vand2025_official.py --challenge ../shared/vand2025_challenge \\
        --data-root ../shared/data/mvtec_loco_subset --category juice_bottle --preset offline --out runs/vand2025_official

Copies CHALLENGE (a checkout of ``cvpr-vand/challenge``, e.g. the pinned copy in
``shared/vand2025_challenge``) to OUT/fork and makes the copy a submission with
``python experiments/vand2025.py --package``. Then runs, each in a fresh Python
process with an empty analysis cache of its own, timed by wall clock:

1. ``python experiments/vand2025.py`` on the same categories, seeds and k
   (``--no-pixel``: the evaluator computes no pixel metric), into OUT/protocol;
2. the official evaluator as it is: ``eval.evaluate.evaluate_submission`` with
   ``eval.evaluate.CATEGORIES`` narrowed to the categories, with the fork's
   ``src`` and its carried loco_ad first on the import path (what ``uv sync``
   installs), in OUT/official, where it writes its ``metrics.csv``.

Writes OUT/comparison.csv (one row per category, seed and k: both F1-max and
their difference) and OUT/timing.json, prints both, and exits with 1 when a
difference exceeds ``TOLERANCE``. Each step's output is in OUT/<step>.log.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from loco_ad.cli import ArgumentParser, Unique, output_folder, run_main, seed
from loco_ad.data import CATEGORIES, resolve_categories
from loco_ad.errors import LocoAdError
from loco_ad.io import ResultSet, check_output_dir, write_csv, write_json

REPOSITORY = Path(__file__).resolve().parents[1]
VAND2025 = REPOSITORY / "experiments" / "vand2025.py"
CARRIED = Path("src/eval/submission/loco_ad")  # where vand2025.py --package puts loco_ad in the fork
TOLERANCE = 1e-6
COMPARISON_COLUMNS = ["category", "seed", "k_shot", "vand2025", "official", "difference"]

# Run by the fork's Python path: the evaluator unmodified, only its category list narrowed.
OFFICIAL = """
import json, sys
import eval.evaluate as evaluate
import loco_ad
evaluate.CATEGORIES = json.loads(sys.argv[1])
evaluate.evaluate_submission(json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4])
print("loco_ad imported from", loco_ad.__file__)
"""


def run_step(name: str, command: list[str], out: Path, cwd: Path | None = None, env: dict | None = None) -> float:
    """Run one step in a fresh process, its output in OUT/<name>.log.

    Returns:
      its wall time in seconds.
    Raises:
      LocoAdError: the step exited with a non-zero code (the message quotes its last line).
    """
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = out / f"{name}.log"
    log.write_text(result.stdout + result.stderr)
    if result.returncode:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        raise LocoAdError(f"{name} failed with exit code {result.returncode}: {last[0]}")  # its log goes with the unfinished set
    return seconds


def check_inputs(challenge: Path, root: Path, categories: Sequence[str], out: Path) -> None:
    """``LocoAdError``, before anything is written, unless ``challenge`` holds the evaluator,
    the categories are under ``root`` and ``out`` can be written."""
    if not (challenge / "src" / "eval" / "evaluate.py").is_file():
        raise LocoAdError(f"{challenge} is not a checkout of the VAND 2025 challenge repository (no src/eval/evaluate.py)")
    foreign = [name for name in resolve_categories(root, categories) if name not in CATEGORIES]
    if foreign:
        raise LocoAdError(f"the official evaluator knows only the MVTec LOCO categories ({', '.join(CATEGORIES)}), not {', '.join(foreign)}")
    check_output_dir(out, "--out folder")


def copy_checkout(challenge: Path, fork: Path) -> None:
    """Copy the challenge checkout to ``fork`` (replacing it), writable even when the source is read-only."""
    if fork.exists():
        shutil.rmtree(fork)
    shutil.copytree(challenge, fork, ignore=shutil.ignore_patterns(".git", ".venv"))
    for path in [fork, *fork.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def read_scores(path: Path) -> dict[tuple[str, int, int], float]:
    """(category, seed, k) → image_score of a ``metrics.csv`` (the evaluator's or ``vand2025.py``'s)."""
    with open(path) as file:
        return {(row["category"], int(row["seed"]), int(row["k_shot"])): float(row["image_score"]) for row in csv.DictReader(file)}


def compare(
    challenge: Path, root: Path, categories: Sequence[str], seeds: Sequence[int], shots: Sequence[int], preset: str, out: Path
) -> dict:
    """Make the fork, run both evaluations and compare them (see the module docstring).

    Returns:
      ``timing.json``'s content: both wall times, the largest difference and the loco_ad file the evaluator imported.
    """
    check_inputs(challenge, root, categories, out)
    # written into the result set's staging folder, an absolute path (the evaluator runs in OUT/official)
    results = ResultSet(out, inputs={"--challenge checkout": challenge, "data root": root})
    with results as out:
        fork = out / "fork"
        copy_checkout(challenge, fork)
        # vand2025.py runs on this checkout's loco_ad, the one --package carries into the fork
        own = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
        run_step("package", [sys.executable, str(VAND2025), "--package", str(fork), "--preset", preset], out, env=own)

        caches = {step: out / f"cache_{step}" for step in ("protocol", "official")}
        for cache in caches.values():
            shutil.rmtree(cache, ignore_errors=True)
        numbers = lambda values: [str(value) for value in values]  # noqa: E731
        protocol_s = run_step("protocol", [
            sys.executable, str(VAND2025), "--data-root", str(root), "--category", *categories, "--seeds", *numbers(seeds),
            "--shots", *numbers(shots), "--preset", preset, "--out", str(out / "protocol"),
            "--cache-dir", str(caches["protocol"]), "--no-pixel", "--quiet",
        ], out, env=own)

        official = out / "official"
        shutil.rmtree(official, ignore_errors=True)
        official.mkdir()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fork / "src"), str(fork / CARRIED)]),
               "LOCO_AD_CACHE": str(caches["official"])}
        arguments = [json.dumps(list(categories)), json.dumps(list(seeds)), json.dumps(list(shots)), str(root.resolve())]
        official_s = run_step("official", [sys.executable, "-c", OFFICIAL, *arguments], out, cwd=official, env=env)

        ours, theirs = read_scores(out / "protocol" / "metrics.csv"), read_scores(official / "metrics.csv")
        if ours.keys() != theirs.keys():
            raise LocoAdError(f"the two metrics.csv files cover different runs: {sorted(ours)} and {sorted(theirs)}")
        rows = [{"category": category, "seed": seed, "k_shot": k, "vand2025": value, "official": theirs[(category, seed, k)],
                 "difference": value - theirs[(category, seed, k)]} for (category, seed, k), value in ours.items()]
        write_csv(out / "comparison.csv", rows, COMPARISON_COLUMNS)
        log = (out / "official.log").read_text()
        timing = {
            "vand2025_s": round(protocol_s, 1),
            "official_s": round(official_s, 1),
            "max_abs_difference": max(abs(row["difference"]) for row in rows),
            "loco_ad": str(results.final_path(log.rpartition("loco_ad imported from ")[2].partition("\n")[0])),
        }
        write_json(out / "timing.json", timing)
        return timing


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python experiments/vand2025_official.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--challenge", type=Path, required=True, help="a checkout of the challenge repository (copied, not changed)")
    parser.add_argument("--data-root", type=Path, required=True, help="MVTec LOCO AD root folder")
    parser.add_argument("--category", nargs="+", required=True, help="categories to evaluate")
    parser.add_argument("--seeds", nargs="+", type=seed, action=Unique, default=[42, 0, 1234], help="draw seeds (default 42 0 1234)")
    parser.add_argument("--shots", nargs="+", type=int, action=Unique, default=[1, 2, 4, 8], help="k values (default 1 2 4 8)")
    parser.add_argument("--preset", default="offline", help="loco_ad preset (default offline)")
    parser.add_argument("--out", type=output_folder, default=Path("runs/vand2025_official"), help="output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        timing = compare(args.challenge, args.data_root, args.category, args.seeds, args.shots, args.preset, args.out)
        with open(args.out / "comparison.csv") as file:
            for row in csv.DictReader(file):
                print(f"{row['category']:<20} seed {row['seed']:>5}  k {row['k_shot']}  vand2025 {float(row['vand2025']):.6f}"
                      f"  official {float(row['official']):.6f}  difference {float(row['difference']):+.1e}")
        print(f"\nwall time: experiments/vand2025.py {timing['vand2025_s']} s, official evaluator {timing['official_s']} s "
              f"(fresh processes, empty caches); largest |difference| {timing['max_abs_difference']:.1e}")
        print(f"the evaluator imported loco_ad from {timing['loco_ad']}; results in {args.out}/")
        return 1 if timing["max_abs_difference"] > TOLERANCE else 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
