"""Choosing the series of a DICOM study that feed a model's inputs (plain Python).

The study picker lists the series of a study from Slicer's DICOM database; only image series of
a modality the model accepts are candidates, and they are assigned to the model's inputs by
``unetseg.engine.matching.match_inputs`` on their SeriesDescription, so the same rules as for
loaded volumes apply (the most specific pattern wins, each series feeds one input).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unetseg.engine.matching import Candidate, MatchResult, match_inputs

if TYPE_CHECKING:
    from unetseg.engine.manifest import InputSpec

#: Chest radiographs are stored as CR or DX depending on the detector; a model for one reads both.
_EQUIVALENT_MODALITIES = {"CR": ("CR", "DX"), "DX": ("CR", "DX")}


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a study as listed by the DICOM database."""

    uid: str
    description: str
    modality: str
    number: str = ""

    def label(self) -> str:
        """``"<number>: <description>"`` as Slicer names loaded series."""
        description = self.description or "(no description)"
        return f"{self.number}: {description}" if self.number else description


def acceptedModalities(modelModality: str) -> tuple[str, ...]:
    """DICOM modalities whose series a model of ``modelModality`` can read."""
    return _EQUIVALENT_MODALITIES.get(modelModality, (modelModality,))


def matchStudySeries(
    series: Sequence[SeriesInfo], inputSpecs: Sequence[InputSpec], modelModality: str
) -> MatchResult:
    """Assign series of one study to model inputs.

    Args:
        series: the study's series.
        inputSpecs: the model's inputs (``ModelPackage.inputs``).
        modelModality: the model's ``modality``; other modalities (SEG, RTSTRUCT, SR, a CT in
            an MR study, ...) are never candidates. Series without a modality are kept.

    Returns:
        ``MatchResult`` whose ``assigned`` values are ``SeriesInfo`` objects; missing required
        inputs are listed in ``missing_required`` (no exception).
    """
    accepted = acceptedModalities(modelModality)
    candidates = [
        Candidate(name=info.description, series_description=info.description, item=info)
        for info in series
        if not info.modality or info.modality in accepted
    ]
    return match_inputs(candidates, inputSpecs, raise_on_missing=False)
