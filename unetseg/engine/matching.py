"""Assigning images to a model's inputs by name and DICOM series description.

Candidates are ``Candidate`` descriptors (files, DICOM series, volume nodes: the host layer
describes its nodes with ``unetseg.host.volumes.describeVolume``) or file paths.

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

from unetseg.engine.manifest import InputSpec

#: Image file endings of two parts, removed whole by ``image_stem``.
DOUBLE_SUFFIXES = (".nii.gz", ".seg.nrrd")


@dataclass(frozen=True)
class Candidate:
    """An image offered for matching.

    Attributes:
        name: display name (node name, or file name without extension).
        file_name: file name (without folder), empty if not from a file.
        series_description: DICOM SeriesDescription (0008,103E), empty if unknown.
        item: what ``MatchResult.assigned`` returns for it (a volume node, a path, ...);
            the descriptor itself when None.
    """

    name: str
    file_name: str = ""
    series_description: str = ""
    item: Any = None


def image_stem(file_name: str) -> str:
    """File name without its image extensions (``flair.nii.gz`` -> ``flair``)."""
    for suffix in DOUBLE_SUFFIXES:
        if file_name.lower().endswith(suffix):
            return file_name[: -len(suffix)]
    return Path(file_name).stem


def _as_candidate(candidate: Any) -> Candidate:
    if isinstance(candidate, Candidate):
        return candidate if candidate.item is not None else _with_item(candidate)
    if isinstance(candidate, str | Path):
        path = Path(candidate)
        return Candidate(name=image_stem(path.name), file_name=path.name, item=candidate)
    raise TypeError(
        f"cannot match {candidate!r}: offer a Candidate or a file path (volume nodes: "
        "unetseg.host.volumes.describeVolume)"
    )


def _with_item(candidate: Candidate) -> Candidate:
    return Candidate(candidate.name, candidate.file_name, candidate.series_description, candidate)


class MissingInputError(ValueError):
    """Required model inputs have no image. ``inputs`` lists ``(name, title, patterns)``."""

    def __init__(self, missing: Sequence[InputSpec]) -> None:
        self.inputs = [
            (i.name, i.title, i.name_patterns + i.series_description_patterns) for i in missing
        ]
        lines = []
        for spec in missing:
            wanted = []
            if spec.name_patterns:
                wanted.append(f"named like {list(spec.name_patterns)}")
            if spec.series_description_patterns:
                patterns = list(spec.series_description_patterns)
                wanted.append(f"with a series description like {patterns}")
            lines.append(f"  - {spec.title} ('{spec.name}'): no volume {' or '.join(wanted)}")
        super().__init__(
            "Missing required input(s); rename the volumes or select them by hand:\n"
            + "\n".join(lines)
        )


@dataclass
class MatchResult:
    """Outcome of ``match_inputs``.

    Attributes:
        assigned: input name -> candidate (as passed in: ``Candidate.item``, path or
            ``Candidate``).
        missing_required: required inputs without a candidate, in manifest order.
        missing_optional: optional inputs without a candidate, in manifest order.
        ambiguous: input name -> other unassigned candidates that fit it exactly as well as
            the assigned one (the face should let the user confirm).
        scores: input name -> score of the assigned candidate (0 for user overrides and for
            the lone candidate a single-input model takes).
    """

    assigned: dict[str, Any] = field(default_factory=dict)
    missing_required: list[str] = field(default_factory=list)
    missing_optional: list[str] = field(default_factory=list)
    ambiguous: dict[str, list[Any]] = field(default_factory=dict)
    scores: dict[str, int] = field(default_factory=dict)


def pattern_specificity(pattern: str) -> int:
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


def _best_score(patterns: Sequence[str], texts: Sequence[str]) -> int:
    texts = [text.lower() for text in texts if text]
    return max(
        (
            1 + pattern_specificity(pattern)
            for pattern in patterns
            if any(fnmatch.fnmatchcase(text, pattern.lower()) for text in texts)
        ),
        default=0,
    )


def match_score(spec: InputSpec, candidate: Any) -> int:
    """Score of ``candidate`` (``Candidate`` or path) for one input spec; 0 = no match."""
    candidate = _as_candidate(candidate)
    return max(
        _best_score(spec.name_patterns, [candidate.name, candidate.file_name]),
        _best_score(spec.series_description_patterns, [candidate.series_description]),
    )


def _find_override_candidate(value: Any, candidates: list[Candidate]) -> Candidate:
    """Resolve an override: a candidate's item, or a string naming one candidate (path, name
    or file name). Other objects and ``Path`` objects are used as given."""
    for candidate in candidates:
        if value is candidate.item:
            return candidate
    if isinstance(value, str | Path):
        found = [c for c in candidates if _is_named(c, value)]
        if len(found) == 1:
            return found[0]
        if found or isinstance(value, str):
            raise ValueError(
                f"Override '{value}' matches {len(found)} candidate volumes; expected exactly one"
            )
        return _as_candidate(value)
    if isinstance(value, Candidate):
        return _as_candidate(value)
    return Candidate(name=str(value), item=value)


def _is_named(candidate: Candidate, value: str | Path) -> bool:
    """True if ``value`` is the candidate's path, name or file name."""
    item = candidate.item
    if isinstance(item, str | Path):
        return Path(item) == Path(value)
    return str(value) in (candidate.name, candidate.file_name)


def match_inputs(
    candidates: Sequence[Any],
    input_specs: Sequence[InputSpec],
    overrides: Mapping[str, Any] | None = None,
    raise_on_missing: bool = True,
) -> MatchResult:
    """Assign candidate images to model inputs (see the module doc for the scoring).

    Args:
        candidates: ``Candidate`` descriptors or file paths.
        input_specs: the model's inputs (``ModelPackage.inputs``).
        overrides: input name -> the user's choice: a candidate's item, a string naming
            exactly one candidate (path, name or file name), another object or ``Path`` (used
            as given), or None to leave the input empty. They take precedence and their
            candidates are not used for other inputs.
        raise_on_missing: raise ``MissingInputError`` when a required input stays empty;
            set False to inspect ``missing_required`` instead (e.g. to fill a GUI).

    Returns:
        A ``MatchResult``.
    """
    inputs = list(input_specs)
    pool = [_as_candidate(candidate) for candidate in candidates]
    result = MatchResult()
    fixed: set[str] = set()
    used: list[Candidate] = []
    for input_name, value in (overrides or {}).items():
        if input_name not in {i.name for i in inputs}:
            raise ValueError(f"Override for unknown input '{input_name}'")
        fixed.add(input_name)
        if value is None:
            continue
        candidate = _find_override_candidate(value, pool)
        if any(candidate.item is other.item for other in used):
            raise ValueError(f"Volume '{candidate.name}' is chosen for more than one input")
        used.append(candidate)
        result.assigned[input_name] = candidate.item
        result.scores[input_name] = 0

    free = [c for c in pool if not any(c.item is u.item for u in used)]
    open_ = [i for i in inputs if i.name not in fixed]
    all_scores = np.array([[match_score(i, c) for c in free] for i in inputs], dtype=float)
    all_scores = all_scores.reshape(len(inputs), len(free))
    scores = all_scores[[row for row, spec in enumerate(inputs) if spec.name not in fixed]]
    if scores.size:
        # Fit: the score, lowered by how much better the candidate suits another input.
        fit = 2 * scores - all_scores.max(axis=0)[None, :]
        # Lexicographic objective as one weight: each bonus exceeds any sum of lower terms.
        matched = scores > 0
        required = np.array([i.required for i in open_])[:, None]
        optional_bonus = 2 * np.abs(fit).sum() + 2
        required_bonus = (len(open_) + 2) * optional_bonus
        tie_break = np.arange(len(free))[None, :] / (len(free) * len(open_) + 1)
        bonus = np.where(required, required_bonus, optional_bonus)
        weights = np.where(matched, bonus + fit - tie_break, 0.0)
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
        # A single-input model takes the only image given, whatever its name.
        result.assigned[inputs[0].name] = free[0].item
        result.scores[inputs[0].name] = 0
    for spec in inputs:
        if spec.name not in result.assigned:
            missing = result.missing_required if spec.required else result.missing_optional
            missing.append(spec.name)
    if raise_on_missing and result.missing_required:
        raise MissingInputError([i for i in inputs if i.name in result.missing_required])
    return result
