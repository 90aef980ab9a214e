"""``sample`` (list or copy the bundled sample images) and ``demo`` (segment them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from unetseg.cli.common import add_command, require_slicer
from unetseg.engine.options import DEVICES


def add_parsers(
    commands: argparse._SubParsersAction, common: list[argparse.ArgumentParser]
) -> None:
    """Add ``sample`` and ``demo`` to ``commands``."""
    sample = add_command(commands, "sample", common, "list or copy the bundled real sample images")
    sample.add_argument("ids", nargs="*", metavar="ID", help="samples to copy (default: all)")
    sample.add_argument("--list", action="store_true", help="list the samples and exit")
    sample.add_argument("--out", type=Path, help="copy the samples into this folder")

    demo = add_command(
        commands,
        "demo",
        common,
        "segment every bundled sample with its bundled model (.seg.nrrd, PNG, JSON)",
    )
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    demo.add_argument("--device", default="auto", choices=DEVICES, help="where the network runs")
    sample.set_defaults(handler=run_sample)
    demo.set_defaults(handler=run_demo)


def run_sample(args: argparse.Namespace) -> int:
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


def run_demo(args: argparse.Namespace) -> int:
    require_slicer()
    from unetseg.demo import run_demo

    run_demo(args.out, device=args.device)
    return 0
