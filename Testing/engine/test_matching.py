"""Matching images to model inputs: naming styles, series descriptions, ambiguity, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetseg.engine.manifest import InputSpec, input_specs
from unetseg.engine.matching import (
    Candidate,
    MissingInputError,
    match_inputs,
    match_score,
    pattern_specificity,
)

# BraTS-style 4-sequence brain model inputs, as in a manifest.
INPUTS = [
    InputSpec(
        "t1c",
        "T1 post-contrast",
        name_patterns=("*t1c*", "*t1*gd*", "*t1*post*", "*t1ce*"),
        series_description_patterns=("*t1*post*", "*t1*gd*", "*mprage*gd*"),
    ),
    InputSpec("t1", "T1 native", name_patterns=("*t1*",), series_description_patterns=("*t1*",)),
    InputSpec("t2", "T2", name_patterns=("*t2*",), series_description_patterns=("*t2*",)),
    InputSpec(
        "flair",
        "T2 FLAIR",
        required=False,
        name_patterns=("*flair*", "*t2f*"),
        series_description_patterns=("*flair*",),
    ),
]


def _names(result) -> dict[str, str]:
    return {
        name: item.name if isinstance(item, Candidate) else str(item)
        for name, item in result.assigned.items()
    }


def test_specificity_counts_literal_characters():
    assert pattern_specificity("*t1*gd*") == 4
    assert pattern_specificity("*t2*") == 2
    assert pattern_specificity("[Tt]1?post") == 6


def test_brats_2023_names_prefer_most_specific_pattern():
    # t2f must go to FLAIR (*t2f*, 3 literals) although *t2* (2) also matches it.
    candidates = [Candidate(f"BraTS-GLI-00001-000-{s}") for s in ("t2f", "t1n", "t2w", "t1c")]

    result = match_inputs(candidates, INPUTS)

    assert _names(result) == {
        "t1c": "BraTS-GLI-00001-000-t1c",
        "t1": "BraTS-GLI-00001-000-t1n",
        "t2": "BraTS-GLI-00001-000-t2w",
        "flair": "BraTS-GLI-00001-000-t2f",
    }
    assert result.missing_required == result.missing_optional == []
    assert result.ambiguous == {}


def test_mixed_naming_styles_with_file_paths():
    candidates = [
        Path("/data/case7/flair.nii.gz"),
        Candidate("T1-Gd"),
        Candidate("Ax T2 FSE"),
        Candidate("BraTS_001_t1"),
    ]

    result = match_inputs(candidates, INPUTS)

    assert result.assigned["flair"] == Path("/data/case7/flair.nii.gz")
    assert _names(result) | {"flair": "flair"} == {
        "t1c": "T1-Gd",
        "t1": "BraTS_001_t1",
        "t2": "Ax T2 FSE",
        "flair": "flair",
    }


def test_series_descriptions_decide_for_dicom_like_names():
    candidates = [
        Candidate("3: Series", series_description="AX T2 FLAIR"),
        Candidate("4: Series", series_description="SAG T1 MPRAGE GD"),
        Candidate("5: Series", series_description="AX T2 FSE"),
        Candidate("6: Series", series_description="AX T1 SE"),
    ]

    result = match_inputs(candidates, INPUTS)

    assert {k: v.series_description for k, v in result.assigned.items()} == {
        "flair": "AX T2 FLAIR",
        "t1c": "SAG T1 MPRAGE GD",
        "t2": "AX T2 FSE",
        "t1": "AX T1 SE",
    }


def test_catch_all_pattern_matches_with_lowest_priority():
    inputs = [InputSpec("ct", name_patterns=("*",)), InputSpec("mask", name_patterns=("*mask*",))]

    result = match_inputs([Candidate("lung_mask"), Candidate("Chest CT 3mm")], inputs)

    assert _names(result) == {"ct": "Chest CT 3mm", "mask": "lung_mask"}
    assert result.scores == {"ct": 1, "mask": 5}


def test_optimal_assignment_beats_greedy():
    # Greedy would give "x_t1c" to t1 (score 3) and leave t1c empty.
    inputs = [
        InputSpec("t1", name_patterns=("*t1c*", "*t1*")),
        InputSpec("t1c", name_patterns=("*t1c*",)),
    ]

    result = match_inputs([Candidate("x_t1c"), Candidate("x_t1")], inputs)

    assert _names(result) == {"t1": "x_t1", "t1c": "x_t1c"}


def test_ambiguous_candidates_are_reported_and_first_wins():
    candidates = [Candidate("t1c_run1"), Candidate("t1c_run2"), Candidate("t1"), Candidate("t2")]

    result = match_inputs(candidates, INPUTS)

    assert result.assigned["t1c"].name == "t1c_run1"
    assert [c.name for c in result.ambiguous["t1c"]] == ["t1c_run2"]
    assert result.missing_optional == ["flair"]


def test_overrides_take_precedence():
    candidates = [Candidate("t1c_a"), Candidate("t1c_b"), Candidate("t1"), Candidate("t2")]
    other = Candidate("anything")

    by_name = match_inputs(candidates, INPUTS, overrides={"t1c": "t1c_b"})
    by_object = match_inputs(candidates, INPUTS, overrides={"t1": other, "flair": None})

    assert _names(by_name)["t1c"] == "t1c_b"
    assert by_name.ambiguous == {}
    assert by_object.assigned["t1"] is other
    assert by_object.scores["t1"] == 0
    assert "flair" in by_object.missing_optional
    with pytest.raises(ValueError, match="unknown input"):
        match_inputs(candidates, INPUTS, overrides={"t3": "t1"})
    with pytest.raises(ValueError, match="more than one input"):
        match_inputs(candidates, INPUTS, overrides={"t1": "t1", "t2": "t1"})
    with pytest.raises(ValueError, match="matches 0"):
        match_inputs(candidates, INPUTS, overrides={"t1": "nonexistent"})


def test_missing_required_input_names_title_and_patterns():
    candidates = [Candidate("t1c"), Candidate("flair")]

    with pytest.raises(MissingInputError) as error:
        match_inputs(candidates, INPUTS)
    result = match_inputs(candidates, INPUTS, raise_on_missing=False)

    message = str(error.value)
    assert "T1 native ('t1')" in message and "'*t1*'" in message
    assert "T2 ('t2')" in message
    assert [name for name, _, _ in error.value.inputs] == ["t1", "t2"]
    assert result.missing_required == ["t1", "t2"]
    assert result.missing_optional == []


def test_manifest_entries_parse_to_the_same_specs():
    entries = [
        {
            "name": spec.name,
            "title": spec.title,
            "required": spec.required,
            "name_patterns": list(spec.name_patterns),
            "series_description_patterns": list(spec.series_description_patterns),
            "normalization": {"method": "none"},
        }
        for spec in INPUTS
    ]
    specs = input_specs({"inputs": entries})

    assert specs == tuple(INPUTS)
    assert match_score(specs[0], Candidate("T1-Gd")) == 5


@pytest.mark.shared_data
def test_real_brats_met_files(shared_data):
    folder = shared_data / "brats_met_unlabeled"
    if not folder.is_dir():
        pytest.skip(f"{folder} not available")

    result = match_inputs(sorted(folder.glob("*.nii.gz")), INPUTS)

    assert {k: Path(v).name for k, v in result.assigned.items()} == {
        "t1c": "t1c.nii.gz",
        "t1": "t1.nii.gz",
        "t2": "t2.nii.gz",
        "flair": "flair.nii.gz",
    }


CT_INPUT = [InputSpec("ct", "Chest CT", name_patterns=("*ct*",))]


def test_a_single_input_model_takes_the_only_volume_whatever_its_name() -> None:
    lone = Candidate("Series 3", series_description="")
    result = match_inputs([lone], CT_INPUT)
    assert result.assigned == {"ct": lone} and result.scores == {"ct": 0}


def test_a_single_input_model_does_not_guess_between_unnamed_volumes() -> None:
    with pytest.raises(MissingInputError, match="Chest CT"):
        match_inputs([Candidate("Series 3"), Candidate("Series 4")], CT_INPUT)


def test_the_lone_volume_rule_is_only_for_single_input_models() -> None:
    result = match_inputs([Candidate("Series 3")], INPUTS, raise_on_missing=False)
    assert result.assigned == {}
