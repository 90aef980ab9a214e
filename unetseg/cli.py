"""Headless command line: ``python -m unetseg {segment,segment-batch,models,sample,demo}``.

The same entry runs inside Slicer:
``Slicer --no-main-window --python-script <repo>/unetseg/scripts/slicer_segment.py -- segment ...``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from unetseg import __version__
from unetseg.exits import debug_option, run_command

if TYPE_CHECKING:
    from unetseg.engine.package import ModelPackage

#: The human-readable model card next to a package's model.json (optional).
#: Loggers of libraries that are quiet unless ``-v`` (highdicom logs nine INFO lines per SEG).
THIRD_PARTY_LOGGERS = ("highdicom", "slicer")
#: A ``segment`` whose inference took longer than this (s) on the CPU without ``--fast``
#: ends with a hint about ``--fast`` and GPUs.
SLOW_INFERENCE_S = 30.0
#: What ``segment``, ``segment-batch`` and ``demo`` need besides the base packages.
SLICER_CORE_HINT = (
    "pip install slicer-core (wheels for Linux x86-64, macOS arm64 and Windows x64), "
    "or run it inside 3D Slicer: Slicer --no-main-window --python-script "
    "unetseg/scripts/slicer_segment.py -- ..."
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the empty ones (None, False, [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, []):
            return action.help
        return super()._get_help_string(action)


def _verbosity_option() -> argparse.ArgumentParser:
    """Parent parser adding ``-q/--quiet`` and ``-v/--verbose``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print debug messages and those of third-party libraries (highdicom, slicer)",
    )
    return parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetseg", description=__doc__.splitlines()[0], formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    common = [debug_option()]

    segment = commands.add_parser(
        "segment",
        parents=[*common, _verbosity_option()],
        help="segment one case (files or DICOM folders)",
        formatter_class=_HelpFormatter,
    )
    segment.add_argument("--model", required=True, help="model id or model folder")
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
    segment.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the network runs"
    )
    segment.add_argument("--overlap", type=float, help="window overlap (default: the model's)")
    segment.add_argument(
        "--fast",
        action="store_true",
        help="run only the fewest windows covering the body/head box and allow CPU bfloat16: "
        "faster, approximate (some voxels may be labelled differently)",
    )

    batch = commands.add_parser(
        "segment-batch",
        parents=[*common, _verbosity_option()],
        help="segment many cases with one model (one case per sub-folder, or a CSV of cases)",
        formatter_class=_HelpFormatter,
    )
    batch.add_argument("--model", required=True, help="model id or model folder")
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
    batch.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the network runs"
    )
    batch.add_argument("--overlap", type=float, help="window overlap (default: the model's)")
    batch.add_argument(
        "--fast", action="store_true", help="faster, approximate inference (see segment --help)"
    )
    for command in (segment, batch):
        command.add_argument(
            "--strict",
            action="store_true",
            help="refuse inputs that do not look like the model's modality (DICOM Modality, "
            "intensity range) instead of warning",
        )

    models = commands.add_parser(
        "models",
        parents=common,
        help="list the available model packages; 'models info ID' prints a model's card; "
        "'models install PATH' installs a package folder or .zip",
        formatter_class=_HelpFormatter,
    )
    models.add_argument("--path", nargs="*", type=Path, help="extra model folders to search")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models_commands = models.add_subparsers(dest="models_command", metavar="{info,install}")
    info = models_commands.add_parser(
        "info",
        parents=common,
        help="print a model's card: intended use, data, metrics, licence",
        formatter_class=_HelpFormatter,
    )
    info.add_argument("id", metavar="ID", help="model id (id@version for one version) or folder")
    info.add_argument("--path", nargs="*", type=Path, help="extra model folders to search")
    install = models_commands.add_parser(
        "install",
        parents=common,
        help="install a model package (folder or .zip; checksum verified) into a model folder",
        formatter_class=_HelpFormatter,
    )
    install.add_argument(
        "source",
        metavar="PATH",
        type=Path,
        help="a model package folder (model.json + weights) or a .zip holding one",
    )
    install.add_argument(
        "--to",
        type=Path,
        metavar="DIR",
        help="model folder to install into (default: the first folder of UNETSEG_MODEL_PATH, "
        "else ~/.unetseg/models); the package goes to <folder>/<model id>/",
    )
    install.add_argument(
        "--overwrite", action="store_true", help="replace an installed package of the same id"
    )

    sample = commands.add_parser(
        "sample",
        parents=common,
        help="list or copy the bundled real sample images",
        formatter_class=_HelpFormatter,
    )
    sample.add_argument("ids", nargs="*", metavar="ID", help="samples to copy (default: all)")
    sample.add_argument("--list", action="store_true", help="list the samples and exit")
    sample.add_argument("--out", type=Path, help="copy the samples into this folder")

    demo = commands.add_parser(
        "demo",
        parents=common,
        help="segment every bundled sample with its bundled model (.seg.nrrd, PNG, JSON)",
        formatter_class=_HelpFormatter,
    )
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    demo.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the network runs"
    )
    return parser


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


def _check_segment_arguments(args: argparse.Namespace) -> dict[str, str]:
    """Every check that needs no input, model or Slicer; returns the ``--map`` overrides.

    Raises:
        ValueError: a bad output suffix, ``--map`` syntax, ``--overlap``, or ``--dicom-seg``
            without a DICOM folder among the inputs.
    """
    from unetseg.host import exports

    exports.outputKinds(args.output)
    exports.checkSuffix("--preview", args.preview, ".png")
    exports.checkSuffix("--statistics", args.statistics, ".csv")
    overrides = _overrides(args.map)
    _check_overlap(args.overlap)
    if args.dicom_seg is not None and not any(Path(p).is_dir() for p in args.input):
        raise ValueError(
            "--dicom-seg needs the reference input to be a DICOM series: give a DICOM folder "
            "as --input"
        )
    return overrides


class RunProgress:
    """Progress of a run on ``stream``: a line when a stage starts ("loading inputs...") and a
    tqdm bar of the sliding windows, fed by the engine's ``progress(done, total)`` callback (a
    restart, e.g. on the CPU after a GPU ran out of memory, starts the bar again)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar: Any = None

    def stage(self, name: str) -> None:
        """Close the window bar of the previous stage and announce ``name``."""
        from tqdm import tqdm

        self.close()
        tqdm.write(f"{name}...", file=self._stream)

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc="windows", unit="window", file=self._stream, dynamic_ncols=True
            )
        elif total != self._bar.total or done < self._bar.n:
            self._bar.reset(total=total)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextmanager
def _run_progress(quiet: bool, stream: TextIO) -> Iterator[RunProgress | None]:
    """A ``RunProgress`` on ``stream`` when it is a terminal and not ``quiet``, else None."""
    if quiet or not stream.isatty():
        yield None
        return
    bar = RunProgress(stream)
    try:
        yield bar
    finally:
        bar.close()


def _require_module(name: str, needed_for: str, hint: str) -> None:
    """Check that ``import name`` works.

    Raises:
        RuntimeError: one line saying what needs it and what to install, with the import error.
    """
    try:
        importlib.import_module(name)
    except ImportError as error:
        raise RuntimeError(f"{needed_for}, which cannot be imported ({error}): {hint}") from error


def _require_slicer() -> None:
    """Check that ``import slicer`` works (``slicer-core`` or the Slicer app)."""
    _require_module("slicer", "this command needs Slicer's MRML", SLICER_CORE_HINT)


def _require_highdicom() -> None:
    """Check that ``highdicom`` (the DICOM SEG writer) can be imported."""
    _require_module("highdicom", "--dicom-seg needs highdicom", "pip install highdicom")


def _segment(args: argparse.Namespace) -> int:
    overrides = _check_segment_arguments(args)
    _require_slicer()
    if args.dicom_seg is not None:
        _require_highdicom()
    from unetseg.host.batch import segmentFiles

    with _run_progress(args.quiet, sys.stderr) as progress:
        report = segmentFiles(
            args.model,
            args.input,
            args.output,
            dicomSeg=args.dicom_seg,
            summary=args.summary,
            preview=args.preview,
            statistics=args.statistics,
            device=args.device,
            overlap=args.overlap,
            fast=args.fast,
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
    if report["fast"] or not on_cpu or seconds <= SLOW_INFERENCE_S:
        return None
    return (
        f"hint: inference took {seconds:.0f} s on the CPU; --fast (approximate, see --help) "
        "or a GPU (--device cuda with a CUDA build of torch) is faster"
    )


def _check_overlap(overlap: float | None) -> None:
    if overlap is not None and not 0.0 <= overlap < 1.0:
        raise ValueError(f"--overlap must be in [0, 1), got {overlap}")


def _segment_batch(args: argparse.Namespace) -> int:
    """Run ``segment-batch``; exit code 1 when a case failed."""
    from unetseg.host import cases

    _check_overlap(args.overlap)
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise ValueError(f"--output-dir {args.output_dir} is not a folder")
    if args.cases is not None:
        found = cases.casesFromCsv(args.cases)
    else:
        found = cases.casesFromFolder(args.input_dir, args.output_dir)
    cases.checkCases(found)
    _require_slicer()
    with _run_progress(args.quiet, sys.stderr) as progress:
        rows = cases.segmentCases(
            args.model,
            found,
            args.output_dir,
            outputFormat=args.output_format,
            statistics=args.statistics,
            overwrite=args.overwrite,
            device=args.device,
            overlap=args.overlap,
            fast=args.fast,
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
    for name, source in report["inputs"].items():
        where = source["path"]
        if "series_instance_uid" in source:
            description = source["series_description"] or "(no description)"
            where += f" [series {source['series_number']}: {description!r} {source['modality']}]"
        print(f"  input {name}: {where} ({source['matched']})")
    for source in report["unused_inputs"]:
        print(f"  not used: {source}")
    for name in report["missing_optional_inputs"]:
        print(f"  input {name}: MISSING (optional; result flagged)")
    for segment in report["statistics"]["segments"]:
        print(f"  {segment['name']}: {formatSize(segment)}")
    if "lesions" in report["statistics"]:
        print(f"  lesions: {report['statistics']['lesion_count']}")
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in report["timings_s"].items())
    print(f"  timings: {timings}")
    for kind, path in report["outputs"].items():
        print(f"  wrote {kind}: {path}")


def _models(args: argparse.Namespace) -> int:
    from unetseg.engine.registry import default_search_paths, list_models, resolve_model

    if args.models_command == "install":
        return _models_install(args)
    paths = default_search_paths() + list(args.path or [])
    if args.models_command == "info":
        print(_model_card(resolve_model(args.id, paths)))
        return 0
    errors: list = []
    packages = list_models(paths, errors=errors)
    if args.json:
        print(json.dumps([p.manifest | {"path": str(p.path)} for p in packages], indent=2))
    else:
        for package in packages:
            inputs = ", ".join(spec.name for spec in package.inputs)
            print(
                f"{package.id} {package.version}  {package.title}  [{package.modality}; {inputs}]"
            )
            print(f"    {package.path}")
        if not packages:
            print("No model packages found in: " + ", ".join(str(p) for p in paths))
    for error in errors:
        print(f"skipped invalid package: {error}", file=sys.stderr)
    return 0


def _models_install(args: argparse.Namespace) -> int:
    """Run ``models install``: print where the package went and how to list it."""
    from unetseg.engine.install import install_model

    package = install_model(args.source, args.to, overwrite=args.overwrite)
    print(f"Installed {package.id} {package.version} in {package.path}")
    print(_listing_hint(package))
    return 0


def _listing_hint(package: ModelPackage) -> str:
    """How ``models`` finds the freshly installed ``package``: listed, listed but not chosen
    for its id (another copy comes first), or only with ``--path`` (its folder is not in the
    search path)."""
    from unetseg.engine.registry import default_search_paths, list_models

    folder = package.path.parent
    paths = default_search_paths()
    if folder not in {path.expanduser().resolve() for path in paths}:
        return (
            f"{folder} is not in the model search path: list it with "
            f"python -m unetseg models --path {folder}, or add it to UNETSEG_MODEL_PATH"
        )
    listed = list_models(paths, errors=[])
    chosen = next((p for p in listed if p.id == package.id), package)
    if chosen.path != package.path:
        return (
            f"note: the model id {package.id} picks version {chosen.version} in {chosen.path} "
            "(a higher version, or the same one earlier in the search path); give the folder "
            f"{package.path} to use the installed one"
        )
    return f"python -m unetseg models now lists it (model id {package.id})"


def _model_card(package: ModelPackage) -> str:
    """The package's ``MODEL_CARD.md`` when it has one, else the card its manifest gives
    (title, version, licence, intended use, description, inputs, labels, training), followed
    by the package folder."""
    from unetseg.engine.package import MODEL_CARD_FILE

    card = package.path / MODEL_CARD_FILE
    if card.is_file():
        text = card.read_text(encoding="utf-8").rstrip()
    else:
        manifest = package.manifest
        inputs = ", ".join(
            f"{spec.name} ({spec.title}{'' if spec.required else ', optional'})"
            for spec in package.inputs
        )
        lines = [
            f"# {package.title} - `{package.id}` {package.version}",
            "",
            f"Licence: {manifest['license']}",
            f"Intended use: {manifest['intended_use']}",
            f"Description: {package.description}",
            f"Modality: {package.modality} ({package.spatial_dims}D); inputs: {inputs}",
            "Labels: " + ", ".join(f"{label.value} {label.name}" for label in package.labels),
        ]
        training = manifest.get("training", {})
        if training.get("datasets"):
            lines.append("Training data: " + "; ".join(training["datasets"]))
        if training.get("metrics"):
            metrics = ", ".join(f"{key} {value}" for key, value in training["metrics"].items())
            lines.append(f"Metrics: {metrics}")
        text = "\n".join(lines)
    return f"{text}\n\nModel folder: {package.path}"


def _sample(args: argparse.Namespace) -> int:
    from unetseg.sampledata import copy_sample, get_sample, list_samples

    if args.list or args.out is None:
        for item in list_samples():
            inputs = ", ".join(f"{f.input}={f.path.name}" for f in item.files)
            print(f"{item.id}  {item.title}  [model {item.model}; {inputs}]")
            print(f"    {item.license}; {item.citation}")
        if not args.list:
            print("Copy them with: python -m unetseg sample --out DIR [ID ...]")
        return 0
    try:
        chosen = [get_sample(i) for i in args.ids] if args.ids else list_samples()
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    for item in chosen:
        for path in copy_sample(item.id, args.out):
            print(path)
    return 0


def _demo(args: argparse.Namespace) -> int:
    _require_slicer()
    from unetseg.demo import run_demo

    run_demo(args.out, device=args.device)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (see ``unetseg.exits``: errors print one
    line and give 2, SIGINT/SIGTERM give 130)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    handler = {
        "segment": _segment,
        "segment-batch": _segment_batch,
        "models": _models,
        "sample": _sample,
        "demo": _demo,
    }[args.command]
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    with _verbosity(quiet, verbose):
        return run_command(f"unetseg {args.command}", lambda: handler(args), debug=args.debug)


@contextmanager
def _verbosity(quiet: bool, verbose: bool) -> Iterator[None]:
    """Log levels for the block: UNetSeg INFO (WARNING with ``quiet``, DEBUG with
    ``verbose``); ``THIRD_PARTY_LOGGERS`` WARNING (ERROR with ``quiet``) and highdicom's
    warnings hidden, unless ``verbose``. The previous levels come back after."""
    levels = {"unetseg": logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO}
    if not verbose:
        levels |= dict.fromkeys(THIRD_PARTY_LOGGERS, logging.ERROR if quiet else logging.WARNING)
    loggers = {name: logging.getLogger(name) for name in levels}
    previous = {name: logger.level for name, logger in loggers.items()}
    with warnings.catch_warnings():
        if not verbose:
            warnings.filterwarnings("ignore", module=r"highdicom(\.|$)")
        try:
            for name, level in levels.items():
                loggers[name].setLevel(level)
            yield
        finally:
            for name, level in previous.items():
                loggers[name].setLevel(level)
