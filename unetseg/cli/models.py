"""``models``: list the model packages, print a card, install a package, export a network."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from unetseg.cli.common import add_command

if TYPE_CHECKING:
    from unetseg.engine.package import ModelPackage


def add_parsers(
    commands: argparse._SubParsersAction, common: list[argparse.ArgumentParser]
) -> None:
    """Add ``models`` (and its ``info``, ``install`` and ``export``) to ``commands``."""
    model_parents = [*common, _model_argument()]
    models = add_command(
        commands,
        "models",
        [*common, _search_option()],
        "list the available model packages; 'models info ID' prints a model's card; "
        "'models install PATH' installs a package folder or .zip; 'models export ID' writes "
        "its network as ONNX or OpenVINO IR",
    )
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models_commands = models.add_subparsers(dest="models_command", metavar="{info,install,export}")
    add_command(
        models_commands,
        "info",
        model_parents,
        "print a model's card: intended use, data, metrics, licence",
    )
    install = add_command(
        models_commands,
        "install",
        common,
        "install a model package (folder or .zip; checksum verified) into a model folder",
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
    export = add_command(
        models_commands,
        "export",
        model_parents,
        "write a model's network as ONNX or OpenVINO IR (static window shape)",
    )
    export.add_argument("--format", choices=("onnx", "openvino"), default="onnx")
    export.add_argument(
        "--out", type=Path, required=True, help="the .onnx file, or the .xml of the OpenVINO IR"
    )
    export.add_argument(
        "--window-batch", type=int, default=1, help="windows per forward pass (input batch)"
    )
    export.add_argument("--overwrite", action="store_true", help="replace existing files")
    models.set_defaults(handler=run_models)


def _search_option() -> argparse.ArgumentParser:
    """Parent parser adding ``--path`` (more folders to find models in)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--path", nargs="*", type=Path, help="extra model folders to search")
    return parent


def _model_argument() -> argparse.ArgumentParser:
    """Parent parser adding the ``ID`` of one model, and ``--path``."""
    parent = argparse.ArgumentParser(add_help=False, parents=[_search_option()])
    parent.add_argument("id", metavar="ID", help="model id (id@version for one version) or folder")
    return parent


def run_models(args: argparse.Namespace) -> int:
    """Run ``models`` and its subcommands."""
    from unetseg.engine.registry import default_search_paths, list_models, resolve_model

    if args.models_command == "install":
        return _models_install(args)
    paths = default_search_paths() + list(args.path or [])
    if args.models_command == "export":
        return _models_export(resolve_model(args.id, paths), args)
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


def _models_export(package: ModelPackage, args: argparse.Namespace) -> int:
    """Run ``models export``: write the network and print where it went."""
    from unetseg.engine import export

    suffix = ".onnx" if args.format == "onnx" else ".xml"
    if args.out.suffix != suffix:
        raise ValueError(f"--out must end with {suffix} for --format {args.format}")
    written = [args.out] if args.format == "onnx" else [args.out, args.out.with_suffix(".bin")]
    existing = [str(path) for path in written if path.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist(s); add --overwrite to replace")
    writer = export.export_onnx if args.format == "onnx" else export.export_openvino
    writer(package, args.out, window_batch=args.window_batch)
    shape = "x".join(map(str, export.window_shape(package, args.window_batch)))
    print(f"{package.id} {package.version}: input {shape} (N, C, *window) -> {args.out}")
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
        inputs = ", ".join(
            f"{spec.name} ({spec.title}{'' if spec.required else ', optional'})"
            for spec in package.inputs
        )
        lines = [
            f"# {package.title} - `{package.id}` {package.version}",
            "",
            f"Licence: {package.license}",
            f"Intended use: {package.intended_use}",
            f"Description: {package.description}",
            f"Modality: {package.modality} ({package.spatial_dims}D); inputs: {inputs}",
            "Labels: " + ", ".join(f"{label.value} {label.name}" for label in package.labels),
        ]
        training = package.training
        if training.get("datasets"):
            lines.append("Training data: " + "; ".join(training["datasets"]))
        if training.get("metrics"):
            metrics = ", ".join(f"{key} {value}" for key, value in training["metrics"].items())
            lines.append(f"Metrics: {metrics}")
        text = "\n".join(lines)
    return f"{text}\n\nModel folder: {package.path}"
