"""Which model packages a module offers, and their description for the panel.

Plain Python (no Slicer, no torch). The choice is driven by the manifest alone: a module lists
a package when its ``modality`` is one of the module's modalities and at least one of its labels
is coded, as terminology ``type`` or ``anatomic_region``, with one of the module's anatomy codes
(SNOMED CT). A new model for a task therefore needs no code change, only correct codes.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, TypeVar

if TYPE_CHECKING:
    from unetseg.engine.package import ModelPackage


class Code(NamedTuple):
    """A coded concept; only ``scheme`` and ``value`` take part in comparisons."""

    scheme: str
    value: str
    meaning: str

    def matches(self, code: Mapping[str, str] | None) -> bool:
        return bool(code) and (code.get("scheme"), code.get("value")) == (self.scheme, self.value)


BRAIN = Code("SCT", "12738006", "Brain")
LUNG = Code("SCT", "39607008", "Lung")
OVARY = Code("SCT", "15497006", "Ovary")


PackageT = TypeVar("PackageT", bound="ModelPackage")


@dataclass(frozen=True)
class ModelFilter:
    """Manifest-based choice of the models a module lists.

    Attributes:
        modalities: accepted manifest ``modality`` values (DICOM modality codes).
        anatomy: a model needs one label whose terminology ``type`` or ``anatomic_region`` is
            one of these codes.
    """

    modalities: tuple[str, ...]
    anatomy: tuple[Code, ...]

    def accepts(self, package: ModelPackage) -> bool:
        """Whether a module with this filter lists ``package``."""
        if package.modality not in self.modalities:
            return False
        for label in package.labels:
            terminology = label.terminology or {}
            codes = (terminology.get("type"), terminology.get("anatomic_region"))
            if any(wanted.matches(code) for wanted in self.anatomy for code in codes):
                return True
        return False

    def select(self, packages: Iterable[PackageT]) -> list[PackageT]:
        """The accepted packages, in the given order."""
        return [package for package in packages if self.accepts(package)]

    def describe(self) -> str:
        """The rule in words, e.g. ``modality MR and a label coded Brain (SCT 12738006)``."""
        anatomy = " or ".join(f"{c.meaning} ({c.scheme} {c.value})" for c in self.anatomy)
        return f"modality {' or '.join(self.modalities)} and a label coded {anatomy}"


BRAIN_MRI_MODELS = ModelFilter(modalities=("MR",), anatomy=(BRAIN,))
#: CT (3D) and chest radiographs (2D, CR or DX).
LUNG_MODELS = ModelFilter(modalities=("CT", "CR", "DX"), anatomy=(LUNG,))
OVARIAN_CT_MODELS = ModelFilter(modalities=("CT",), anatomy=(OVARY,))


def latestVersions(packages: Iterable[PackageT]) -> list[PackageT]:
    """The first package of each id, in order: with ``list_models`` output (sorted by id, then
    by decreasing version) this is the highest version of each model."""
    seen: set[str] = set()
    latest = []
    for package in packages:
        if package.id not in seen:
            seen.add(package.id)
            latest.append(package)
    return latest


def modelSummaryHtml(package: ModelPackage) -> str:
    """Rich-text description of a model for the panel's info label (all text escaped):
    title, version, licence, intended use, description, image type and resource needs."""
    e = html.escape
    dims = "2D (one slice)" if package.spatial_dims == 2 else "3D"
    inputs = ", ".join(
        e(spec.title) + ("" if spec.required else " (optional)") for spec in package.inputs
    )
    lines = [
        f"<b>{e(package.title)}</b> {e(package.version)} &middot; licence {e(package.license)}",
        f"<i>Intended use:</i> {e(package.intended_use)}",
    ]
    if package.description:
        lines.append(e(package.description))
    lines.append(f"{e(package.modality)} {dims}; inputs: {inputs}")
    needs = package.requirements
    if needs:
        parts = []
        if "cpu_seconds_estimate" in needs:
            parts.append(f"about {needs['cpu_seconds_estimate']:g} s on a CPU")
        if "ram_gb" in needs:
            parts.append(f"{needs['ram_gb']:g} GB RAM")
        if "gpu_memory_gb" in needs:
            parts.append(f"{needs['gpu_memory_gb']:g} GB GPU memory")
        lines.append("Needs " + ", ".join(parts))
    if package.citation:
        lines.append(f"<i>Cite:</i> {e(package.citation)}")
    return "<br>".join(lines)
