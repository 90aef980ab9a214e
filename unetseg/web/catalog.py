"""Tasks and models offered by the web face, with the modules' card text, and input matching.

The three tasks are the three Slicer modules, with the same manifest-driven model filters
(``unetseg.gui.modelCatalog``) and the same card (``modelSummaryHtml``, all text escaped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from unetseg.engine.matching import match_inputs
from unetseg.engine.package import ModelPackage
from unetseg.engine.registry import list_models
from unetseg.gui.modelCatalog import (
    BRAIN_MRI_MODELS,
    LUNG_MODELS,
    OVARIAN_CT_MODELS,
    ModelFilter,
    latestVersions,
    modelSummaryHtml,
)
from unetseg.host.volumes import describeVolume

#: Task id -> (title shown, the module's model filter).
TASKS: dict[str, tuple[str, ModelFilter]] = {
    "brain": ("Brain tumour on MRI (BrainMetSeg)", BRAIN_MRI_MODELS),
    "lung": ("Lungs on CT or chest X-ray (LungSeg)", LUNG_MODELS),
    "ovarian": ("Ovarian cancer on CT (OvarianSeg)", OVARIAN_CT_MODELS),
}


class Catalog:
    """The installed model packages (highest version of each id), read once."""

    def __init__(self, packages: Sequence[ModelPackage] | None = None) -> None:
        self.packages = latestVersions(list_models() if packages is None else packages)

    def task_items(self) -> list[dict[str, str]]:
        return [{"value": key, "title": title} for key, (title, _) in TASKS.items()]

    def models_for(self, task: str) -> list[ModelPackage]:
        """The models the module of ``task`` lists (none for an unknown task)."""
        if task not in TASKS:
            return []
        return TASKS[task][1].select(self.packages)

    def model_items(self, task: str) -> list[dict[str, str]]:
        return [
            {"value": p.id, "title": f"{p.title} ({p.id} {p.version})"}
            for p in self.models_for(task)
        ]

    def get(self, model_id: str) -> ModelPackage:
        """The package ``model_id``; ``KeyError`` when not installed."""
        for package in self.packages:
            if package.id == model_id:
                return package
        raise KeyError(f"Model '{model_id}' is not installed")

    def task_of(self, model_id: str) -> str | None:
        """The first task listing ``model_id`` (to preselect after loading a sample)."""
        for task in TASKS:
            if any(p.id == model_id for p in self.models_for(task)):
                return task
        return None

    @staticmethod
    def card_html(package: ModelPackage) -> str:
        return modelSummaryHtml(package)


def input_rows(package: ModelPackage) -> list[dict[str, Any]]:
    """One row per model input for the panel: name, title, required."""
    return [
        {"name": spec.name, "title": spec.title, "required": spec.required}
        for spec in package.inputs
    ]


def auto_match(package: ModelPackage, volume_nodes: Sequence[Any]) -> dict[str, str | None]:
    """Input name -> the node ID matched by name or SeriesDescription (None: no match)."""
    result = match_inputs(
        [describeVolume(node) for node in volume_nodes], package.inputs, raise_on_missing=False
    )
    return {
        spec.name: (result.assigned[spec.name].GetID() if spec.name in result.assigned else None)
        for spec in package.inputs
    }


def chosen_nodes(
    package: ModelPackage, chosen: Mapping[str, str | None], scene: Any
) -> dict[str, Any]:
    """Input name -> volume node for the user's choices (unknown or empty ids left out).

    Raises:
        ValueError: a required input has no volume, or one volume is chosen twice.
    """
    nodes: dict[str, Any] = {}
    for spec in package.inputs:
        node_id = chosen.get(spec.name)
        node = scene.GetNodeByID(node_id) if node_id else None
        if node is None:
            if spec.required:
                raise ValueError(f"Choose a volume for the input '{spec.title}'")
            continue
        nodes[spec.name] = node
    ids = [node.GetID() for node in nodes.values()]
    if len(set(ids)) != len(ids):
        raise ValueError("The same volume is chosen for two inputs")
    return nodes
