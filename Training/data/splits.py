"""Patient-level dataset splits: train/val, train/val/test and k-fold, deterministic per seed,
or fixed patient lists.

All cases of a patient (same ``patient_id``) land in the same part. Inference-only records
(``has_label == False``) are left out: they are never used for training or validation.
Split sizes are counted in patients (largest-remainder rounding, at least one patient for every
part with a non-zero fraction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from Training.data.records import CaseRecord


@dataclass(frozen=True)
class Split:
    """Records of each part; ``test`` is empty for train/val splits and folds."""

    train: tuple[CaseRecord, ...]
    val: tuple[CaseRecord, ...]
    test: tuple[CaseRecord, ...] = ()

    def case_ids(self) -> dict[str, list[str]]:
        """Case ids per part, e.g. to save the split next to a trained model."""
        return {
            "train": [r.case_id for r in self.train],
            "val": [r.case_id for r in self.val],
            "test": [r.case_id for r in self.test],
        }


def _patients(records: Sequence[CaseRecord], seed: int) -> tuple[list[str], dict[str, list]]:
    """Labelled records grouped by patient; patients in a seeded random order."""
    groups: dict[str, list[CaseRecord]] = {}
    for record in records:
        if record.has_label:
            groups.setdefault(record.patient_id, []).append(record)
    if not groups:
        raise ValueError("no labelled cases to split")
    order = sorted(groups)  # independent of the input order
    rng = np.random.default_rng(seed)
    return [order[i] for i in rng.permutation(len(order))], groups


def _take(patients: Sequence[str], groups: dict[str, list]) -> tuple[CaseRecord, ...]:
    chosen = set(patients)
    return tuple(
        record
        for patient in sorted(chosen)
        for record in sorted(groups[patient], key=lambda r: r.case_id)
    )


def _part_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Patients per part: largest remainder, then at least one for each non-zero fraction."""
    if len(fractions) not in (2, 3):
        raise ValueError(f"give 2 (train, val) or 3 (train, val, test) fractions, got {fractions}")
    values = np.asarray(fractions, dtype=np.float64)
    if np.any(values < 0) or not np.isclose(values.sum(), 1.0, atol=1e-6):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    if values[0] == 0:
        raise ValueError("the train fraction must be positive")
    needed = int(np.count_nonzero(values))
    if n < needed:
        raise ValueError(
            f"cannot split {n} patient(s) into {needed} non-empty parts {list(fractions)}"
        )
    exact = values * n
    sizes = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - sizes), kind="stable")[: n - sizes.sum()]:
        sizes[index] += 1
    for index in np.flatnonzero((values > 0) & (sizes == 0)):
        sizes[index] = 1
        sizes[int(np.argmax(sizes))] -= 1
    return [int(s) for s in sizes]


def split_cases(
    records: Sequence[CaseRecord], fractions: Sequence[float] = (0.8, 0.2), seed: int = 0
) -> Split:
    """Random patient-level split into train/val (2 fractions) or train/val/test (3).

    Raises:
        ValueError: fractions not summing to 1, negative, zero train fraction, or fewer
            labelled patients than non-empty parts.
    """
    patients, groups = _patients(records, seed)
    sizes = _part_sizes(len(patients), fractions)
    bounds = np.cumsum([0, *sizes])
    parts = [_take(patients[bounds[i] : bounds[i + 1]], groups) for i in range(len(sizes))]
    return Split(*parts)


def kfold(records: Sequence[CaseRecord], k: int = 5, seed: int = 0) -> list[Split]:
    """``k`` patient-level folds: fold i validates on the i-th of k near-equal patient groups
    and trains on the others; every labelled case is validated exactly once.

    Raises:
        ValueError: ``k < 2`` or more folds than labelled patients.
    """
    patients, groups = _patients(records, seed)
    if k < 2 or k > len(patients):
        raise ValueError(
            f"k must be between 2 and the number of patients ({len(patients)}), got {k}"
        )
    chunks = np.array_split(np.asarray(patients, dtype=object), k)
    return [
        Split(
            train=_take([p for j, c in enumerate(chunks) if j != i for p in c], groups),
            val=_take(list(chunks[i]), groups),
        )
        for i in range(k)
    ]


def fixed_split(
    records: Sequence[CaseRecord], val_patients: Sequence[str], test_patients: Sequence[str] = ()
) -> Split:
    """Validation and test parts made of the named patients (patient ids), training of the
    others.

    Raises:
        ValueError: a named patient without labelled cases, or no patient left for training.
    """
    _, groups = _patients(records, 0)
    named = [*val_patients, *test_patients]
    missing = sorted(set(named) - set(groups))
    if missing:
        raise ValueError(f"patients {missing} have no labelled cases (known: {sorted(groups)})")
    train = [patient for patient in groups if patient not in named]
    if not train:
        raise ValueError("every patient is in the validation or test part: none left to train")
    return Split(_take(train, groups), _take(val_patients, groups), _take(test_patients, groups))
