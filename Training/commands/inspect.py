"""``python -m Training inspect``: an HTML report of a labelled dataset (intensities, sequence
correlation, label volumes, lesion sizes, geometry outliers, a voxel map, example slices)."""

from __future__ import annotations

import argparse

from Training.commands import add_data_arguments

HELP = "inspect a labelled dataset: intensity histograms, correlations, label volumes, outliers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(
        parser,
        run_folder="training run folder",
        split_default="all",
        split_help="part of the patient-level split to inspect (default all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the voxel sample (default 0)")
    parser.add_argument(
        "--voxels-per-case",
        type=int,
        default=20_000,
        metavar="N",
        help="most voxels sampled per case (default 20000)",
    )
    parser.add_argument(
        "--max-voxels",
        type=int,
        default=400_000,
        metavar="N",
        help="most voxels sampled in all (default 400000)",
    )
    parser.add_argument(
        "--max-cases",
        type=int,
        metavar="N",
        help="inspect N cases drawn with the seed (default: all)",
    )
    parser.add_argument(
        "--embedding-points",
        type=int,
        default=2000,
        metavar="N",
        help="sampled voxels in the t-SNE map (default 2000; 0: no map)",
    )
    parser.add_argument(
        "--examples", type=int, default=4, metavar="N", help="example cases shown (default 4)"
    )
    parser.add_argument(
        "--foreground",
        choices=("auto", "non-background", "body", "all"),
        default="auto",
        help="voxels the statistics are taken over: those off the constant background (0 or "
        "the minimum), the body/head mask, or all (default auto: in 3D the body/head mask "
        "without the constant background, in 2D every pixel)",
    )


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging
    import sys
    from pathlib import Path

    import numpy as np

    from Training.config import ConfigError
    from Training.data import DatasetError, decathlon_labels
    from Training.evaluation import resolve_data
    from Training.inspect import inspect_dataset

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out)
    try:
        for name in ("voxels_per_case", "max_voxels"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if args.embedding_points < 0 or args.examples < 0:
            raise ValueError("--embedding-points and --examples must not be negative")
        # The layout detection needs a model's inputs only for DICOM folders.
        data = resolve_data(args.data, (), part=args.split, work_dir=out)
        if data.data.reader == "dicom" and not data.data.options.get("inputs"):
            raise DatasetError(
                f"{args.data} holds DICOM series: name the ones to inspect in a data config, "
                "e.g. reader: dicom, root: FOLDER, options: {inputs: {t1c: ['*t1*post*'], "
                "flair: ['*flair*']}}"
            )
        if args.max_cases is not None:
            if args.max_cases < 1:
                raise ValueError("--max-cases must be at least 1")
            rng = np.random.default_rng(args.seed)
            count = min(args.max_cases, len(data.records))
            chosen = np.sort(rng.choice(len(data.records), size=count, replace=False))
            records = tuple(data.records[n] for n in chosen)
            data = dataclasses.replace(data, records=records)
        names = None
        if data.data.reader == "decathlon" and data.data.root is not None:
            names = decathlon_labels(data.data.root)
        print(f"inspecting {len(data.records)} case(s) of {data.source}, part {data.part}")
        result = inspect_dataset(
            data,
            out,
            seed=args.seed,
            voxels_per_case=args.voxels_per_case,
            max_voxels=args.max_voxels,
            embedding_points=args.embedding_points,
            examples=args.examples,
            foreground=args.foreground,
            label_names=names,
        )
    except (ConfigError, DatasetError, ImportError, ValueError, OSError) as error:
        print(f"inspect: error: {error}", file=sys.stderr)
        return 2
    print(
        f"{result['data']['cases']} case(s), {len(result['flagged'])} flagged; "
        f"report {out / 'report.html'}"
    )
    return 0
