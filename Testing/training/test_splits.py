"""Patient-level splits: no patient in two parts, deterministic per seed, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from Training.data import CaseRecord, kfold, split_cases


def make_records(patients: int = 30, seed: int = 0) -> list[CaseRecord]:
    """1-3 labelled cases per patient plus two inference-only cases."""
    rng = np.random.default_rng(seed)
    records = []
    for p in range(patients):
        for visit in range(int(rng.integers(1, 4))):
            records.append(
                CaseRecord(
                    case_id=f"P{p:03d}_{visit}",
                    patient_id=f"P{p:03d}",
                    image_paths={"ct": Path(f"P{p:03d}_{visit}.nii.gz")},
                    label_path=Path(f"P{p:03d}_{visit}_seg.nii.gz"),
                )
            )
    for n in range(2):
        records.append(CaseRecord(f"U{n}", f"U{n}", {"ct": Path(f"U{n}.nii.gz")}))
    return records


def patients_of(part) -> set[str]:
    return {r.patient_id for r in part}


def test_train_val_split_keeps_patients_together():
    records = make_records()
    labelled = {r.case_id for r in records if r.has_label}
    split = split_cases(records, (0.8, 0.2), seed=1)
    assert not patients_of(split.train) & patients_of(split.val)
    assert {r.case_id for r in split.train} | {r.case_id for r in split.val} == labelled
    assert len(split.train) + len(split.val) == len(labelled) and split.test == ()
    assert (len(patients_of(split.train)), len(patients_of(split.val))) == (24, 6)
    assert not {"U0", "U1"} & {r.case_id for r in split.train + split.val}


def test_three_way_split_sizes_and_no_leakage():
    split = split_cases(make_records(), (0.5, 0.2, 0.3), seed=0)
    parts = [patients_of(split.train), patients_of(split.val), patients_of(split.test)]
    assert [len(p) for p in parts] == [15, 6, 9]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_split_is_deterministic_and_independent_of_input_order():
    records = make_records()
    shuffled = [records[i] for i in np.random.default_rng(5).permutation(len(records))]
    first = split_cases(records, (0.5, 0.2, 0.3), seed=7).case_ids()
    assert split_cases(shuffled, (0.5, 0.2, 0.3), seed=7).case_ids() == first
    assert split_cases(records, (0.5, 0.2, 0.3), seed=8).case_ids() != first


def test_small_datasets_give_every_part_a_patient():
    records = make_records(patients=3)
    split = split_cases(records, (0.5, 0.2, 0.3), seed=0)
    assert [len(patients_of(p)) for p in (split.train, split.val, split.test)] == [1, 1, 1]
    split = split_cases(make_records(patients=2), (0.9, 0.1), seed=0)
    assert [len(patients_of(p)) for p in (split.train, split.val)] == [1, 1]
    split = split_cases(make_records(patients=4), (1.0, 0.0), seed=0)
    assert len(patients_of(split.train)) == 4 and split.val == ()


def test_kfold_validates_every_case_exactly_once():
    records = make_records(patients=23)
    folds = kfold(records, k=5, seed=3)
    assert len(folds) == 5
    validated = [r.case_id for fold in folds for r in fold.val]
    labelled = sorted(r.case_id for r in records if r.has_label)
    assert sorted(validated) == labelled
    for fold in folds:
        assert not patients_of(fold.train) & patients_of(fold.val)
        assert len(fold.train) + len(fold.val) == len(labelled)
    sizes = [len(patients_of(fold.val)) for fold in folds]
    assert max(sizes) - min(sizes) <= 1
    assert [f.case_ids() for f in kfold(records, k=5, seed=3)] == [f.case_ids() for f in folds]


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((0.8, 0.3), "sum to 1"),
        ((1.2, -0.2), "non-negative"),
        ((0.5, 0.5, 0.0, 0.0), "give 2"),
        ((0.0, 1.0), "train fraction"),
    ],
)
def test_invalid_fractions(fractions, message):
    with pytest.raises(ValueError, match=message):
        split_cases(make_records(), fractions)


def test_impossible_splits():
    with pytest.raises(ValueError, match="cannot split 2 patient"):
        split_cases(make_records(patients=2), (0.5, 0.2, 0.3))
    with pytest.raises(ValueError, match="k must be between 2"):
        kfold(make_records(patients=4), k=5)
    with pytest.raises(ValueError, match="k must be between 2"):
        kfold(make_records(), k=1)
    unlabelled = [r for r in make_records() if not r.has_label]
    with pytest.raises(ValueError, match="no labelled cases"):
        split_cases(unlabelled)
