"""Headless end-to-end time and peak memory of every bundled model on a real case.

    python bench/bench_bundled.py [--repeats 5] [--backends auto,torch] [--quick] [--output FILE]

Each run is `python -m unetseg segment --model ID --input ... --output x.seg.nrrd` in a fresh
process (exact mode, CPU), as a user runs it: "command" is the wall time of the whole process
(interpreter start, imports, model loading, reading, inference, writing); "in-process" is the
summary's total (from argument parsing to the written file); "inference" the network part; peak
RSS is the process's maximum resident memory. Medians over the repeats. Cases (from
../shared/data; skipped when absent): the 4-sequence 240x240x155 BraTS-METS brain case, the
512x512x141 chest CT, a 512x512 chest X-ray of the held-out split, and the ovarian model on a
full-size pelvic phantom (no real ovarian CT exists here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import publish  # noqa: E402

DATA = REPO.parent / "shared" / "data"
#: Issue targets: seconds end to end (command) per model (issue 11: brain 8 s, chest CT 12 s),
#: and peak memory.
TARGETS_S = {"brain-tumor-mri": 8.0, "lung-ct": 12.0, "lung-cxr": 2.0}
TARGET_RSS_GIB = 3.0


def cases(tmp: Path) -> dict[str, tuple[str, list[Path]]]:
    """name -> (model id, inputs)."""
    found: dict[str, tuple[str, list[Path]]] = {}
    met = DATA / "brats_met_unlabeled"
    if met.is_dir():
        found["brain 240x240x155, 4 sequences"] = ("brain-tumor-mri", sorted(met.glob("*.nii.gz")))
    ct = DATA / "ct_chest_itkelastix" / "chest_ct.nii.gz"
    if ct.is_file():
        found["chest CT 512x512x141"] = ("lung-ct", [ct])
    xray = DATA / "cxr_montgomery_shenzhen" / "images" / "MCUCXR_0020_0.jpg"
    if xray.is_file():
        found["chest X-ray 512x512"] = ("lung-cxr", [xray])
    from Training.synth import write_dataset

    ids = write_dataset("ovarian-ct", tmp / "ovarian", 1, 11, size=256, spacing=(1.5, 1.5, 2.5))
    phantom = tmp / "ovarian" / "CT" / f"{ids[0]}.nii.gz"
    found["pelvic phantom 256x256xK"] = ("ovarian-ct", [phantom])
    return found


def run_once(model: str, inputs: list[Path], out: Path, backend: str) -> dict[str, float]:
    summary = out / "summary.json"
    command = [sys.executable, "-m", "unetseg", "segment", "--model", model, "--device", "cpu"]
    command += ["--backend", backend]
    command += ["--input", *map(str, inputs), "--output", str(out / "x.seg.nrrd")]
    command += ["--summary", str(summary), "--overwrite"]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed")
    timings = json.loads(summary.read_text())["timings_s"]
    return {
        "command": wall,
        "in_process": timings["total"],
        "inference": timings["inference"],
        "peak_gib": usage.ru_maxrss / 2**20,
    }


def _row(model: str, name: str, backend: str, runs: list[dict[str, float]]) -> str:
    """The table row of one model and backend: medians and verdicts against the targets."""
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    target = TARGETS_S.get(model)
    verdicts = [_verdict(median[key], target) for key in ("command", "in_process")]
    verdicts.append(_verdict(median["peak_gib"], TARGET_RSS_GIB))
    return (
        f"| {model} | {name} | {backend} | {median['command']:.2f} | {median['in_process']:.2f} "
        f"| {median['inference']:.2f} | {median['peak_gib']:.2f} "
        f"| {'-' if target is None else f'{target:.0f}'} | {' / '.join(verdicts)} |"
    )


def _verdict(value: float, target: float | None) -> str:
    return "-" if target is None else ("met" if value <= target else "MISSED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="print only (no BENCHMARKS.md)")
    parser.add_argument("--output", type=Path, help="write the section to this file")
    parser.add_argument("--backends", default="auto,torch", help="backends to compare")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, inputs) in cases(Path(tmp)).items():
            backends = args.backends.split(",")
            for backend in backends:  # first use: OpenVINO exports the model into its cache
                run_once(model, inputs, Path(tmp) / f"{model}-warm", backend)
            runs: dict[str, list] = {backend: [] for backend in backends}
            for n in range(args.repeats):  # alternating, so drifts hit every backend alike
                for backend in backends:
                    folder = Path(tmp) / f"{model}-{backend}-{n}"
                    runs[backend].append(run_once(model, inputs, folder, backend))
            for backend, results in runs.items():
                rows.append(_row(model, name, backend, results))
    cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()

    section = "\n".join(
        [
            "## Bundled models end to end (headless, exact, CPU)",
            "",
            f"`python bench/bench_bundled.py --repeats {args.repeats}` on {cpu} CPU cores; "
            "median seconds per run of `python -m unetseg segment --backend B` in a fresh "
            "process (after one warm-up run per backend: OpenVINO exports each model into its "
            f"cache once). Peak memory target {TARGET_RSS_GIB:.0f} GiB.",
            "",
            "| model | case | backend | command s | in-process s | inference s | peak RSS GiB "
            "| target s | command / in-process / memory |",
            "|---|---|---|---:|---:|---:|---:|---:|---|",
            *rows,
            "",
        ]
    )
    publish(section, args.output, args.quick)


if __name__ == "__main__":
    main()
