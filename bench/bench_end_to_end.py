"""End-to-end timings per stage of `python -m unetseg segment` on real cases (headless).

    python bench/bench_end_to_end.py [--repeats 3] [--filters 8,16,32,64,128,256] [--fast]

Cases (skipped when ../shared/data is absent):
- "brats-met": the 4-sequence 240x240x155 BraTS-METS case (NIfTI files, matched by name);
- "pgbm-001": the TCIA Brain-Tumor-Progression study (DICOM folder, 4 series matched by
  SeriesDescription), with a DICOM SEG written on the T1post grid.
Model: the demo brain manifest (t1c, flair, t1, t2; 1 mm; patch 128^3; overlap 0.5) around a
freshly initialised UNetSeg U-Net of about 5-6 M parameters (timing only: an untrained network
costs the same as a trained one, but its lesion table is not meaningful). Reports the median of
each stage over the repeats and the share of the total. `--fast` runs `segment --fast`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from unetseg.engine.network import UNet, count_parameters, describe  # noqa: E402
from unetseg.engine.options import BACKENDS, SegmentOptions  # noqa: E402
from unetseg.host.batch import segmentFiles  # noqa: E402
from unetseg.untrained import brain_mri_manifest, untrained_package  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def cases() -> dict[str, dict]:
    found = {}
    met = DATA / "brats_met_unlabeled"
    if met.is_dir():
        found["brats-met"] = {"inputs": sorted(met.glob("*.nii.gz")), "dicom_seg": False}
    pgbm = DATA / "tcia_brain_tumor_progression" / "PGBM-001"
    if pgbm.is_dir():
        found["pgbm-001"] = {"inputs": [pgbm], "dicom_seg": True}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--filters", default="8,16,32,64,128,256")
    parser.add_argument("--fast", action="store_true", help="segment --fast (approximate)")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    args = parser.parse_args()
    filters = tuple(int(f) for f in args.filters.split(","))
    manifest = brain_mri_manifest(filters=filters, patch_size=(128, 128, 128))
    manifest["network"]["residual"] = True
    network = UNet(**manifest["network"])
    print(f"network: {describe(network)} ({count_parameters(network) / 1e6:.2f} M parameters)")
    with tempfile.TemporaryDirectory() as tmp:
        package = untrained_package(Path(tmp) / "model", manifest)
        for name, case in cases().items():
            runs = []
            for repeat in range(args.repeats):
                out = Path(tmp) / f"{name}-{repeat}"
                report = segmentFiles(
                    package,
                    case["inputs"],
                    out / "result.seg.nrrd",
                    dicomSeg=out / "result.dcm" if case["dicom_seg"] else None,
                    options=SegmentOptions(device="cpu", backend=args.backend, fast=args.fast),
                )
                runs.append(report["timings_s"])
            stages = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
            total = stages["total"]
            mode = "fast" if args.fast else "exact"
            print(f"\n{name} ({mode}, {args.repeats} runs, median s):")
            print("| stage | seconds | share |\n|---|---:|---:|")
            for stage, seconds in stages.items():
                share = "" if stage == "total" else f"{100 * seconds / total:.1f}%"
                print(f"| {stage} | {seconds:.2f} | {share} |")


if __name__ == "__main__":
    main()
