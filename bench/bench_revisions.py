"""The headless `segment` command of an earlier git revision against the working tree.

    python bench/bench_revisions.py --before REV [--repeats 5] [--quick] [--output FILE]

For a change that must not alter behaviour (a refactoring): both checkouts run
`python -m unetseg segment --model ID --device cpu [--backend torch] --input ... --output
x.nii.gz` in fresh processes, rounds alternating which goes first, on the real brain case
(BraTS-METS, 4 sequences) and the real 512x512x141 chest CT from ../shared/data (skipped when
absent). Reported: medians of the whole command, of the summary's in-process total and
inference, of peak RSS, and the fraction of voxels whose labels agree (last run of each).
REV is checked out with `git worktree` into a temporary folder and removed afterwards; both
use this interpreter, the working tree's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import publish  # noqa: E402

DATA = REPO.parent / "shared" / "data"
KEYS = ("command", "in_process", "inference", "peak_gib")


def cases() -> dict[str, tuple[str, list[Path]]]:
    """name -> (model id, inputs)."""
    found = {}
    brain = sorted((DATA / "brats_met_unlabeled").glob("*.nii.gz"))
    if brain:
        found["brain 240x240x155, 4 sequences"] = ("brain-tumor-mri", brain)
    ct = DATA / "ct_chest_itkelastix" / "chest_ct.nii.gz"
    if ct.is_file():
        found["chest CT 512x512x141"] = ("lung-ct", [ct])
    return found


def has_backend_option(checkout: Path) -> bool:
    """Whether this revision's `segment` takes --backend (older ones ran torch only)."""
    help_text = subprocess.run(
        [sys.executable, "-m", "unetseg", "segment", "--help"],
        cwd=checkout,
        env=_env(checkout, checkout),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "--backend" in help_text


def _env(checkout: Path, cache: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(checkout), UNETSEG_CACHE_DIR=str(cache / "cache"))


def run_once(
    checkout: Path, backend_option: bool, model: str, inputs: list[Path], out: Path
) -> dict[str, float]:
    command = [sys.executable, "-m", "unetseg", "segment", "--model", model, "--device", "cpu"]
    command += ["--backend", "torch"] if backend_option else []
    command += ["--input", *map(str, inputs), "--output", str(out / "labels.nii.gz")]
    command += ["--summary", str(out / "summary.json"), "--overwrite"]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=checkout, env=_env(checkout, out), stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {checkout}")
    timings = json.loads((out / "summary.json").read_text())["timings_s"]
    return {
        "command": wall,
        "in_process": timings["total"],
        "inference": timings["inference"],
        "peak_gib": usage.ru_maxrss / 2**20,
    }


def measure(before: str, repeats: int, work: Path) -> str:
    checkouts = {"before": work / "before", "now": REPO}
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-q", str(checkouts["before"]), before],
        cwd=REPO,
        check=True,
    )
    try:
        options = {name: has_backend_option(path) for name, path in checkouts.items()}
        rows = []
        for case, (model, inputs) in cases().items():
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
            for round_index in range(repeats):
                order = list(checkouts) if round_index % 2 == 0 else list(checkouts)[::-1]
                for name in order:
                    out = work / name / case.split()[0]
                    out.mkdir(parents=True, exist_ok=True)
                    runs[name].append(run_once(checkouts[name], options[name], model, inputs, out))
            labels = [
                np.asarray(nib.load(work / name / case.split()[0] / "labels.nii.gz").dataobj)
                for name in checkouts
            ]
            agree = float(np.mean(labels[0] == labels[1]))
            rows.append(_row(case, runs, agree))
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(checkouts["before"])], cwd=REPO, check=True
        )
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return "\n".join(
        [
            "## Refactoring check (revision against the working tree)",
            "",
            f"`python bench/bench_revisions.py --before {before} --repeats {repeats}` on "
            f"{_cpu_name()}, {os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d')}; 'now' is the working tree at {head}. Whole "
            "`segment` command (torch, CPU, exact), fresh process per run, rounds alternating; "
            "medians (command range in brackets). Inference is each process's first, cold pass.",
            "",
            "| case | command s before / now | in-process s | inference s | peak RSS GiB "
            "| labels agree |",
            "|---|---|---|---|---|---:|",
            *rows,
        ]
    )


def _cpu_name() -> str:
    """The CPU model (Linux), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _row(case: str, runs: dict[str, list[dict[str, float]]], agree: float) -> str:
    median = {n: {k: statistics.median(r[k] for r in rs) for k in KEYS} for n, rs in runs.items()}
    spread = {
        n: (min(r["command"] for r in rs), max(r["command"] for r in rs)) for n, rs in runs.items()
    }
    cells = [f"{median['before'][key]:.2f} / {median['now'][key]:.2f}" for key in KEYS[1:]]
    command = " / ".join(
        f"{median[n]['command']:.2f} [{spread[n][0]:.1f}-{spread[n][1]:.1f}]" for n in runs
    )
    return f"| {case} | {command} | {' | '.join(cells)} | {agree:.4%} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="print only (no BENCHMARKS.md)")
    parser.add_argument("--output", type=Path, help="write the section to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-revisions-") as work:
        section = measure(args.before, args.repeats, Path(work))
    publish(section, args.output, args.quick)


if __name__ == "__main__":
    main()
