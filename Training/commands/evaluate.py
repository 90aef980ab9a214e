"""``python -m Training evaluate``: metrics and a report of a model package on labelled data."""

from __future__ import annotations

import argparse

from Training.commands import add_data_arguments
from unetseg.engine.options import DEVICES

HELP = "evaluate a model package on labelled cases: per-case metrics, means and a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model id or model package folder")
    add_data_arguments(
        parser,
        run_folder="training run folder (its split)",
        split_default=None,
        split_help="part of the patient-level split to evaluate (default: a run's or training "
        "config's test part, else its validation part; all cases of a folder or data config)",
    )
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument(
        "--overlays",
        type=int,
        default=3,
        metavar="N",
        help="worst and best cases shown in the report (default 3 each)",
    )
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="skip the calibration (reliability diagram, ECE): one inference pass per case less",
    )
    parser.add_argument(
        "--ablate-inputs",
        action="store_true",
        help="also segment the cases that have every input without each optional input, and "
        "report the change in Dice (metrics.json input_ablation)",
    )
    parser.add_argument(
        "--no-distances",
        action="store_true",
        help="skip the surface distances (HD95, ASSD), the slowest metrics",
    )


def run(args: argparse.Namespace) -> int:
    import logging
    import sys
    from pathlib import Path

    from Training.config import ConfigError
    from Training.data import DatasetError
    from Training.evaluation import evaluate, resolve_data
    from unetseg.engine.manifest import ModelPackageError
    from unetseg.engine.registry import resolve_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out)
    try:
        if args.overlays < 0:
            raise ValueError("--overlays must not be negative")
        package = resolve_model(args.model)
        data = resolve_data(args.data, package.inputs, part=args.split, work_dir=out)
        print(
            f"evaluating {package.id} {package.version} on {len(data.records)} case(s) of "
            f"{data.source}, part {data.part}"
        )
        result = evaluate(
            package,
            data,
            out,
            device=args.device,
            distances=not args.no_distances,
            overlays=args.overlays,
            calibration=not args.no_calibration,
            ablate_inputs=args.ablate_inputs,
        )
    except (ConfigError, DatasetError, ModelPackageError, ValueError, OSError) as error:
        print(f"evaluate: error: {error}", file=sys.stderr)
        return 2
    mean = result["mean"]["mean"]
    print(
        f"mean Dice {mean['dice']:.4f} over {result['data']['cases']} case(s); "
        f"report {out / 'report.html'}"
    )
    ablation = result.get("input_ablation")
    for left_out, scores in (ablation or {}).get("without", {}).items():
        change = ", ".join(f"{region} {value:+.3f}" for region, value in scores["change"].items())
        print(f"without {left_out}: Dice change {change} ({len(ablation['cases'])} case(s))")
    return 0
