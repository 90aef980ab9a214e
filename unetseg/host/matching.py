"""Assigning loaded volumes to a model's inputs by name and DICOM series description.

Candidates are volume nodes or ``Candidate`` descriptors (for headless code, files and DICOM
series not loaded yet). No Slicer import: nodes are read through their methods only.

Scoring: a pattern's specificity is its number of literal characters (``*`` and ``?`` count 0,
a ``[...]`` set counts 1), so ``*t1*gd*`` (4) beats ``*t1*`` (2) and ``*flair*`` (5) beats
``*t2*`` (2). An input's score for a candidate is 1 + the highest specificity among its
``name_patterns`` matching the candidate's name or file name and its
``series_description_patterns`` matching its DICOM SeriesDescription (fnmatch,
case-insensitive); 0 means no match, and a catch-all ``*`` scores 1. Its fit is the score
minus how much higher the candidate scores for any other input (``2 * score - best score of
the candidate``), so a spare ``t1c_run2`` is not taken for T1 while a plain ``t1`` exists.
Candidates are then assigned, each to at most one input, by an optimal assignment that
maximises, in this order: the number of required inputs matched, the number of optional
inputs matched, the total fit, and finally earlier candidates for equal fits (other
unassigned candidates with the same fit are reported as ambiguous).
User overrides are applied first and are never changed. A model with a single input takes
the only candidate offered even when no pattern matches it (score 0).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

# Volume node attribute holding the DICOM SeriesDescription (set by UNetSeg's DICOM loading).
SERIES_DESCRIPTION_ATTRIBUTE = "DICOM.SeriesDescription"


@dataclass(frozen=True)
class Candidate:
    """A volume offered for matching.

    Attributes:
        name: display name (node name, or file name without extension).
        fileName: file name (without folder), empty if not from a file.
        seriesDescription: DICOM SeriesDescription (0008,103E), empty if unknown.
        item: what ``MatchResult.assigned`` returns for it (the volume node, a path, ...);
            the descriptor itself when None.
    """

    name: str
    fileName: str = ""
    seriesDescription: str = ""
    item: Any = None


def describeVolume(volumeNode, seriesDescription: str | None = None) -> Candidate:
    """``Candidate`` for a volume node: its name, its storage file name and SeriesDescription.

    The SeriesDescription is ``seriesDescription`` if given, else the node attribute
    ``DICOM.SeriesDescription``. (Slicer's DICOM database is not reachable without the app;
    callers that have it can pass the value.)
    """
    storageNode = volumeNode.GetStorageNode()
    fileName = storageNode.GetFileName() if storageNode is not None else None
    if seriesDescription is None:
        seriesDescription = volumeNode.GetAttribute(SERIES_DESCRIPTION_ATTRIBUTE) or ""
    return Candidate(
        name=volumeNode.GetName() or "",
        fileName=Path(fileName).name if fileName else "",
        seriesDescription=seriesDescription,
        item=volumeNode,
    )


def _asCandidate(candidate: Any) -> Candidate:
    if isinstance(candidate, Candidate):
        return candidate if candidate.item is not None else _withItem(candidate)
    if isinstance(candidate, str | Path):
        path = Path(candidate)
        return Candidate(name=_stem(path.name), fileName=path.name, item=candidate)
    return describeVolume(candidate)


def _withItem(candidate: Candidate) -> Candidate:
    return Candidate(candidate.name, candidate.fileName, candidate.seriesDescription, candidate)


def _stem(fileName: str) -> str:
    """File name without its image extensions (``flair.nii.gz`` -> ``flair``)."""
    for suffix in (".nii.gz", ".seg.nrrd"):
        if fileName.lower().endswith(suffix):
            return fileName[: -len(suffix)]
    return Path(fileName).stem


@dataclass(frozen=True)
class _Input:
    name: str
    title: str
    required: bool
    namePatterns: tuple[str, ...]
    seriesPatterns: tuple[str, ...]


def _asInput(spec: Any) -> _Input:
    """Accept a manifest ``inputs`` entry (dict) or an ``InputSpec``."""
    if isinstance(spec, _Input):
        return spec

    def get(key: str, default: Any) -> Any:
        if isinstance(spec, Mapping):
            return spec.get(key, default)
        return getattr(spec, key, default)

    name = get("name", None)
    if not name:
        raise ValueError(f"Input spec without a name: {spec!r}")
    return _Input(
        name=name,
        title=get("title", name),
        required=bool(get("required", True)),
        namePatterns=tuple(get("name_patterns", ())),
        seriesPatterns=tuple(get("series_description_patterns", ())),
    )


class MissingInputError(ValueError):
    """Required model inputs have no volume. ``inputs`` lists ``(name, title, patterns)``."""

    def __init__(self, missing: Sequence[Any]) -> None:
        missing = [_asInput(spec) for spec in missing]
        self.inputs = [(i.name, i.title, i.namePatterns + i.seriesPatterns) for i in missing]
        lines = []
        for spec in missing:
            wanted = []
            if spec.namePatterns:
                wanted.append(f"named like {list(spec.namePatterns)}")
            if spec.seriesPatterns:
                wanted.append(f"with a series description like {list(spec.seriesPatterns)}")
            lines.append(f"  - {spec.title} ('{spec.name}'): no volume {' or '.join(wanted)}")
        super().__init__(
            "Missing required input(s); rename the volumes or select them by hand:\n"
            + "\n".join(lines)
        )


@dataclass
class MatchResult:
    """Outcome of ``matchInputs``.

    Attributes:
        assigned: input name -> candidate (as passed in: node, path or ``Candidate``).
        missingRequired: required inputs without a candidate, in manifest order.
        missingOptional: optional inputs without a candidate, in manifest order.
        ambiguous: input name -> other unassigned candidates that fit it exactly as well as
            the assigned one (the face should let the user confirm).
        scores: input name -> score of the assigned candidate (0 for user overrides and for
            the lone candidate a single-input model takes).
    """

    assigned: dict[str, Any] = field(default_factory=dict)
    missingRequired: list[str] = field(default_factory=list)
    missingOptional: list[str] = field(default_factory=list)
    ambiguous: dict[str, list[Any]] = field(default_factory=dict)
    scores: dict[str, int] = field(default_factory=dict)


def patternSpecificity(pattern: str) -> int:
    """Number of literal characters of an fnmatch pattern (``[...]`` counts as one)."""
    count, index = 0, 0
    while index < len(pattern):
        char = pattern[index]
        if char == "[" and "]" in pattern[index + 2 :]:
            index = pattern.index("]", index + 2)
            count += 1
        elif char not in "*?":
            count += 1
        index += 1
    return count


def _bestScore(patterns: Sequence[str], texts: Sequence[str]) -> int:
    texts = [text.lower() for text in texts if text]
    return max(
        (
            1 + patternSpecificity(pattern)
            for pattern in patterns
            if any(fnmatch.fnmatchcase(text, pattern.lower()) for text in texts)
        ),
        default=0,
    )


def matchScore(spec: Any, candidate: Any) -> int:
    """Score of ``candidate`` (node, path or ``Candidate``) for one input spec; 0 = no match."""
    spec, candidate = _asInput(spec), _asCandidate(candidate)
    return max(
        _bestScore(spec.namePatterns, [candidate.name, candidate.fileName]),
        _bestScore(spec.seriesPatterns, [candidate.seriesDescription]),
    )


def _findOverrideCandidate(value: Any, candidates: list[Candidate]) -> Candidate:
    """Resolve an override: a candidate object, or a string naming one candidate (path, name,
    file name or node ID). Other nodes and ``Path`` objects are used as given."""
    for candidate in candidates:
        if value is candidate.item:
            return candidate
    if isinstance(value, str | Path):
        found = [c for c in candidates if _isNamed(c, value)]
        if len(found) == 1:
            return found[0]
        if found or isinstance(value, str):
            raise ValueError(
                f"Override '{value}' matches {len(found)} candidate volumes; expected exactly one"
            )
    return _asCandidate(value)


def _isNamed(candidate: Candidate, value: str | Path) -> bool:
    """True if ``value`` is the candidate's path, name, file name or node ID."""
    item = candidate.item
    if isinstance(item, str | Path):
        return Path(item) == Path(value)
    nodeId = item.GetID() if hasattr(item, "GetID") else None
    return str(value) in (candidate.name, candidate.fileName, nodeId)


def matchInputs(
    candidates: Sequence[Any],
    inputSpecs: Sequence[Any],
    overrides: Mapping[str, Any] | None = None,
    raiseOnMissing: bool = True,
) -> MatchResult:
    """Assign candidate volumes to model inputs (see the module doc for the scoring).

    Args:
        candidates: volume nodes, file paths, or ``Candidate`` descriptors.
        inputSpecs: manifest ``inputs`` entries (dicts) or ``InputSpec`` objects.
        overrides: input name -> the user's choice: a candidate, a string naming exactly one
            candidate (path, name, file name or node ID), another volume node or ``Path``, or
            None to leave the input empty. They take precedence and their candidates are not
            used for other inputs.
        raiseOnMissing: raise ``MissingInputError`` when a required input stays empty;
            set False to inspect ``missingRequired`` instead (e.g. to fill a GUI).

    Returns:
        A ``MatchResult``.
    """
    inputs = [_asInput(spec) for spec in inputSpecs]
    pool = [_asCandidate(candidate) for candidate in candidates]
    result = MatchResult()
    fixed: set[str] = set()
    used: list[Candidate] = []
    for inputName, value in (overrides or {}).items():
        if inputName not in {i.name for i in inputs}:
            raise ValueError(f"Override for unknown input '{inputName}'")
        fixed.add(inputName)
        if value is None:
            continue
        candidate = _findOverrideCandidate(value, pool)
        if any(candidate.item is other.item for other in used):
            raise ValueError(f"Volume '{candidate.name}' is chosen for more than one input")
        used.append(candidate)
        result.assigned[inputName] = candidate.item
        result.scores[inputName] = 0

    free = [c for c in pool if not any(c.item is u.item for u in used)]
    open_ = [i for i in inputs if i.name not in fixed]
    allScores = np.array([[matchScore(i, c) for c in free] for i in inputs], dtype=float)
    allScores = allScores.reshape(len(inputs), len(free))
    scores = allScores[[row for row, spec in enumerate(inputs) if spec.name not in fixed]]
    if scores.size:
        # Fit: the score, lowered by how much better the candidate suits another input.
        fit = 2 * scores - allScores.max(axis=0)[None, :]
        # Lexicographic objective as one weight: each bonus exceeds any sum of lower terms.
        matched = scores > 0
        required = np.array([i.required for i in open_])[:, None]
        optionalBonus = 2 * np.abs(fit).sum() + 2
        requiredBonus = (len(open_) + 2) * optionalBonus
        tieBreak = np.arange(len(free))[None, :] / (len(free) * len(open_) + 1)
        bonus = np.where(required, requiredBonus, optionalBonus)
        weights = np.where(matched, bonus + fit - tieBreak, 0.0)
        rows, cols = linear_sum_assignment(weights, maximize=True)
        chosen = {}
        for row, col in zip(rows, cols, strict=True):
            if matched[row, col]:
                chosen[row] = col
                result.assigned[open_[row].name] = free[col].item
                result.scores[open_[row].name] = int(scores[row, col])
        taken = set(chosen.values())
        for row, col in chosen.items():
            ties = [
                free[other].item
                for other in range(len(free))
                if other not in taken and matched[row, other] and fit[row, other] == fit[row, col]
            ]
            if ties:
                result.ambiguous[open_[row].name] = ties

    if len(inputs) == 1 and not result.assigned and len(free) == 1:
        # A single-input model takes the only volume given, whatever its name.
        result.assigned[inputs[0].name] = free[0].item
        result.scores[inputs[0].name] = 0
    for spec in inputs:
        if spec.name not in result.assigned:
            (result.missingRequired if spec.required else result.missingOptional).append(spec.name)
    if raiseOnMissing and result.missingRequired:
        raise MissingInputError([i for i in inputs if i.name in result.missingRequired])
    return result
