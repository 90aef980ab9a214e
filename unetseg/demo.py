"""``python -m unetseg demo``: every bundled model on its bundled real sample, headless.

For each sample of ``unetseg.sampledata`` the demo runs the model the sample is meant for
(through the same host logic as the Slicer modules) and writes, under the output folder,
``<sample>.seg.nrrd``, ``<sample>.png`` (overlay montage) and ``<sample>.json`` (matched inputs,
volumes, timings), plus ``summary.json`` for all samples. Running it again replaces these files
(atomically, as every output); other files in the folder are never touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unetseg.atomic import write_atomically
from unetseg.engine.manifest import ModelPackageError
from unetseg.engine.registry import resolve_model
from unetseg.sampledata import list_samples


def run_demo(out: str | Path, device: str = "auto") -> list[dict[str, Any]]:
    """Segment the samples into ``out``; returns one summary per segmented sample.

    Raises:
        ModelPackageError: none of the samples' models is installed.
    """
    from unetseg.engine.options import SegmentOptions
    from unetseg.host.batch import segmentFiles
    from unetseg.host.report import formatSize

    out = Path(out)
    reports = []
    for sample in list_samples():
        try:
            package = resolve_model(sample.model)
        except ModelPackageError:
            print(f"{sample.id}: model {sample.model!r} is not installed, skipped")
            continue
        print(f"{sample.title}\n  model: {package.title} ({package.id} {package.version})")
        report = segmentFiles(
            package,
            sample.paths,
            out / f"{sample.id}.seg.nrrd",
            summary=out / f"{sample.id}.json",
            preview=out / f"{sample.id}.png",
            options=SegmentOptions(device=device),
            overrides={item.input: item.path for item in sample.files},
            overwrite=True,  # the demo's own files, named after the samples
        )
        for segment in report["statistics"]["segments"]:
            print(f"  {segment['name']}: {formatSize(segment)}")
        if "lesion_count" in report["statistics"]:
            print(f"  lesions: {report['statistics']['lesion_count']}")
        seconds, where = report["timings_s"]["total"], report["device"]
        print(f"  time: {seconds:.1f} s on {where} ({report['backend']})")
        for kind, path in report["outputs"].items():
            print(f"  {kind}: {path}")
        reports.append({"sample": sample.id, **report})
    if not reports:
        raise ModelPackageError("no bundled model is installed: nothing to demonstrate")
    summary = write_atomically(out / "summary.json", json.dumps(reports, indent=2).encode())
    print(f"Summary of {len(reports)} sample(s): {summary}")
    print("Open a .seg.nrrd in 3D Slicer together with its input images to review it.")
    return reports
