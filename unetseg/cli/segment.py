"""``segment`` (one case) and ``segment-batch`` (many cases with one model)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from unetseg.cli.common import (
    add_command,
    add_run_options,
    require_highdicom,
    require_slicer,
    segment_options,
    verbosity_option,
)
from unetseg.cli.progress import run_progress

if TYPE_CHECKING:
    from unetseg.engine.options import SegmentOptions

#: A ``segment`` whose inference took longer than this (s) on the CPU without ``--fast``
#: ends with a hint about ``--fast`` and GPUs.
SLOW_INFERENCE_S = 30.0


def add_parsers(
    commands: argparse._SubParsersAction, common: list[argparse.ArgumentParser]
) -> None:
    """Add ``segment`` and ``segment-batch`` to ``commands``."""
    one_model = argparse.ArgumentParser(add_help=False)
    one_model.add_argument("--model", required=True, help="model id or model folder")
    parents = [*common, verbosity_option(), one_model]
    segment = add_command(commands, "segment", parents, "segment one case (files or DICOM folders)")
    segment.add_argument(
        "--input",
        required=True,
        nargs="+",
        help="NIfTI/NRRD/MHA files, 2D images, or folders of image files and/or DICOM series "
        "(a case folder), matched to the model inputs by file name or SeriesDescription",
    )
    segment.add_argument(
        "--map",
        nargs="*",
        default=[],
        metavar="INPUT=PATH_OR_SERIES",
        help="override the automatic matching: a file, a folder of one image, or the file "
        "name, series number, SeriesDescription or SeriesInstanceUID of one input, e.g. "
        "t1c=/data/post.nii.gz flair='Ax FLAIR' t2=5",
    )
    segment.add_argument(
        "--output",
        required=True,
        nargs="+",
        help="where to write the result, one or more of: a .seg.nrrd file; a .nii.gz/.nii "
        "label map (with a <name>.json sidecar of label names, colours and codes); a folder "
        "(ending with / or existing) for one <segment>.nii.gz mask per segment",
    )
    segment.add_argument("--dicom-seg", type=Path, help="also write a DICOM SEG")
    segment.add_argument("--summary", type=Path, help="also write a JSON summary")
    segment.add_argument(
        "--preview", type=Path, help="also write an overlay montage of the result (.png)"
    )
    segment.add_argument(
        "--statistics",
        type=Path,
        help="also write per-segment volume and intensity statistics per input (.csv; lesion "
        "models add <stem>_lesions.csv)",
    )
    segment.add_argument(
        "--overwrite", action="store_true", help="replace output files that already exist"
    )
    add_run_options(segment)

    batch = add_command(
        commands,
        "segment-batch",
        parents,
        "segment many cases with one model (one case per sub-folder, or a CSV of cases)",
    )
    cases = batch.add_mutually_exclusive_group(required=True)
    cases.add_argument(
        "--input-dir",
        type=Path,
        help="one case per sub-folder (image files and/or DICOM series, as --input of segment)",
    )
    cases.add_argument(
        "--cases",
        type=Path,
        help="CSV with a case_id column and input paths in the other columns (relative to "
        "the CSV; a column named after a model input chooses that input)",
    )
    batch.add_argument(
        "--output-dir",
        required=True,
        type=Path,
        help="<case>.seg.nrrd or <case>.nii.gz, <case>.summary.json (and <case>_statistics.csv) "
        "per case, and summary.csv for the batch",
    )
    batch.add_argument(
        "--output-format", default="seg.nrrd", choices=("seg.nrrd", "nii.gz"), help="result files"
    )
    batch.add_argument(
        "--statistics", action="store_true", help="also write each case's statistics CSV"
    )
    batch.add_argument(
        "--overwrite",
        action="store_true",
        help="segment finished cases again (by default a case whose outputs exist is skipped)",
    )
    add_run_options(batch)
    for command in (segment, batch):
        command.add_argument(
            "--strict",
            action="store_true",
            help="refuse inputs that do not look like the model's modality (DICOM Modality, "
            "intensity range) instead of warning",
        )
    segment.set_defaults(handler=run_segment)
    batch.set_defaults(handler=run_segment_batch)


def _overrides(pairs: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"--map expects INPUT=PATH_OR_SERIES, got {pair!r}")
        if name.strip() in overrides:
            raise ValueError(f"--map gives input {name.strip()!r} more than once")
        overrides[name.strip()] = value.strip()
    return overrides


def _check_segment_arguments(
    args: argparse.Namespace,
) -> tuple[dict[str, str], SegmentOptions]:
    """Every check that needs no input, model or Slicer; returns the ``--map`` overrides and
    the run's options.

    Raises:
        ValueError: a bad output suffix, ``--map`` syntax, ``--overlap``, or ``--dicom-seg``
            without a DICOM folder among the inputs.
    """
    from unetseg.host import exports

    exports.outputKinds(args.output)
    exports.checkSuffix("--preview", args.preview, ".png")
    exports.checkSuffix("--statistics", args.statistics, ".csv")
    overrides = _overrides(args.map)
    options = segment_options(args)
    if args.dicom_seg is not None and not any(Path(p).is_dir() for p in args.input):
        raise ValueError(
            "--dicom-seg needs the reference input to be a DICOM series: give a DICOM folder "
            "as --input"
        )
    return overrides, options


def run_segment(args: argparse.Namespace) -> int:
    """Run ``segment``."""
    overrides, options = _check_segment_arguments(args)
    require_slicer()
    if args.dicom_seg is not None:
        require_highdicom()
    from unetseg.host.batch import segmentFiles

    with run_progress(args.quiet, sys.stderr) as progress:
        report = segmentFiles(
            args.model,
            args.input,
            args.output,
            dicomSeg=args.dicom_seg,
            summary=args.summary,
            preview=args.preview,
            statistics=args.statistics,
            options=options,
            overrides=overrides,
            overwrite=args.overwrite,
            progress=progress,
            stage=None if progress is None else progress.stage,
            strict=args.strict,
        )
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if not args.quiet:
        _print_report(report)
        hint = _speed_hint(report)
        if hint:
            print(hint, file=sys.stderr)
    return 0


def _speed_hint(report: dict) -> str | None:
    """One line suggesting ``--fast`` and a GPU when the inference of ``report`` (a
    ``segmentFiles`` report) took longer than ``SLOW_INFERENCE_S`` on the CPU without
    ``--fast``; None otherwise."""
    seconds = report["timings_s"].get("inference", 0.0)
    on_cpu = report["device"].startswith("CPU")
    if report["options"]["fast"] or not on_cpu or seconds <= SLOW_INFERENCE_S:
        return None
    return (
        f"hint: inference took {seconds:.0f} s on the CPU; --fast (approximate, see --help) "
        "or a GPU (--device cuda with a CUDA build of torch) is faster"
    )


def run_segment_batch(args: argparse.Namespace) -> int:
    """Run ``segment-batch``; exit code 1 when a case failed."""
    from unetseg.host import cases

    options = segment_options(args)
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise ValueError(f"--output-dir {args.output_dir} is not a folder")
    if args.cases is not None:
        found = cases.casesFromCsv(args.cases)
    else:
        found = cases.casesFromFolder(args.input_dir, args.output_dir)
    cases.checkCases(found)
    require_slicer()
    with run_progress(args.quiet, sys.stderr) as progress:
        rows = cases.segmentCases(
            args.model,
            found,
            args.output_dir,
            outputFormat=args.output_format,
            statistics=args.statistics,
            overwrite=args.overwrite,
            options=options,
            strict=args.strict,
            progress=progress,
            stage=None if progress is None else progress.stage,
            onCase=lambda row: _print_case(row, args.quiet),
        )
    counts = {status: sum(r["status"] == status for r in rows) for status in ("ok", "skipped")}
    failed = len(rows) - sum(counts.values())
    if not args.quiet:
        total = f"{len(rows)} case{'' if len(rows) == 1 else 's'}"
        print(
            f"{total}: {counts['ok']} segmented, {counts['skipped']} skipped (outputs exist), "
            f"{failed} failed; summary: {args.output_dir / cases.SUMMARY_CSV}"
        )
    return 1 if failed else 0


def _print_case(row: dict, quiet: bool) -> None:
    """One line per case: stdout when it ran or was skipped, stderr when it failed."""
    if row["status"] == "failed":
        print(f"case {row['case']}: failed: {row['error']}", file=sys.stderr)
        return
    for warning in row["warnings"]:
        print(f"warning: case {row['case']}: {warning}", file=sys.stderr)
    if quiet:
        return
    if row["status"] == "skipped":
        print(f"case {row['case']}: skipped, outputs exist (--overwrite to run it again)")
        return
    sizes = ", ".join(f"{name} {size:g}" for name, size in row["segments"].items())
    print(f"case {row['case']}: done in {row['seconds']:.1f}s ({sizes})")


def _print_report(report: dict) -> None:
    from unetseg.host.report import formatSize

    model = report["model"]
    print(f"Model: {model['title']} ({model['id']} {model['version']}) on {report['device']}")
    print(f"  backend: {report['backend']}")
    for name, source in report["inputs"].items():
        where = source["path"]
        if "series_instance_uid" in source:
            description = source["series_description"] or "(no description)"
            where += f" [series {source['series_number']}: {description!r} {source['modality']}]"
        print(f"  input {name}: {where} ({source['matched']})")
    for source in report["unused_inputs"]:
        print(f"  not used: {source}")
    for name in report["missing_inputs"]:
        print(f"  input {name}: MISSING (optional; result flagged)")
    effect = report.get("missing_input_effect")
    if effect:
        change = ", ".join(
            f"{region} {value:+.3f}" for region, value in effect["dice_change"].items()
        )
        print(
            f"  without {'+'.join(effect['missing'])} this model's Dice changed by {change} "
            f"({effect['cases']} case(s) of {effect['data']})"
        )
    for segment in report["statistics"]["segments"]:
        score = segment.get("uncertainty_mean")
        unsure = "" if score is None else f", mean uncertainty {score:.2f}"
        print(f"  {segment['name']}: {formatSize(segment)}{unsure}")
    if "lesions" in report["statistics"]:
        print(f"  lesions: {report['statistics']['lesion_count']}")
        for lesion in report["statistics"]["lesions"]:
            if lesion.get("low_confidence"):
                print(
                    f"  lesion {lesion['id']}: low confidence "
                    f"(mean uncertainty {lesion['uncertainty_mean']:.2f})"
                )
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in report["timings_s"].items())
    print(f"  timings: {timings}")
    for kind, path in report["outputs"].items():
        print(f"  wrote {kind}: {path}")
