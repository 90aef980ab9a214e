"""``python -m Training inspect``: the dataset report on synthetic data in three layouts (BraTS
case folders, 2D image/mask pairs, Decathlon), checked against what was planted (an outlier
spacing, two identical sequences, label volumes from independently read files), the sampler's
seed and caps, the mask of the histograms, and the HTML page's figures; plus a run on the real
BraTS 2015 cases when ../shared/data is there."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from Testing.case_files import shared_path
from Training.cli import main
from Training.inspect.sampling import case_rng, foreground_mask, sample_case, share
from Training.inspect.statistics import CaseSummary, flag_outliers, weighted_histograms
from Training.synth import write_dataset

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = ["--embedding-points", "150", "--examples", "2", "--voxels-per-case", "3000"]


@pytest.fixture(autouse=True)
def one_tsne_thread(monkeypatch):
    """t-SNE on one thread (the tests share the machine)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        from threadpoolctl import threadpool_limits  # comes with scikit-learn
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def brats(tmp_path_factory) -> Path:
    """Five synthetic BraTS-layout brain MRIs on 1 mm RAS grids; the t2 file of every case is
    a copy of its flair, and case brain_0004's slices are 3 mm apart (all its files)."""
    root = tmp_path_factory.mktemp("brats") / "brats"
    write_dataset("brain-mri", root, 5, seed=2, size=32, layout="brats", spacing=(1, 1, 1))
    for case in sorted(root.iterdir()):
        if case.is_dir():
            shutil.copy(case / f"{case.name}_flair.nii.gz", case / f"{case.name}_t2.nii.gz")
    for path in (root / "brain_0004").glob("*.nii.gz"):
        image = nib.load(path)
        affine = image.affine @ np.diag([1.0, 1.0, 3.0, 1.0])
        nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), affine, image.header), path)
    return root


@pytest.fixture(scope="module")
def brats_report(brats, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report") / "inspect"
    assert main(["inspect", "--data", str(brats), "--out", str(out), *FAST]) == 0
    return out, json.loads((out / "inspect.json").read_text())


def test_planted_outlier_spacing_is_flagged(brats_report):
    out, result = brats_report
    assert set(result["flagged"]) == {"brain_0004"}
    flags = result["flagged"]["brain_0004"]
    assert "spacing z 3 mm (median 1 mm)" in flags
    cases = {case["case_id"]: case for case in result["cases"]}
    assert cases["brain_0004"]["spacing"] == [1.0, 1.0, 3.0]
    assert cases["brain_0000"]["flags"] == []
    assert "spacing z 3 mm" in (out / "cases.csv").read_text()
    page = (out / "report.html").read_text()
    assert '<tr class="flagged"><td>brain_0004</td>' in page


def test_identical_sequences_correlate_one(brats_report):
    _, result = brats_report
    sequences = result["sequences"]
    assert sequences == ["flair", "t1", "t1c", "t2"]
    matrix = np.array(result["correlation"], dtype=float)
    flair, t1, t2 = sequences.index("flair"), sequences.index("t1"), sequences.index("t2")
    assert matrix[flair, t2] == pytest.approx(1.0, abs=1e-9)
    assert np.diag(matrix) == pytest.approx(1.0)
    assert abs(matrix[flair, t1]) < 0.999  # different sequences do not
    for case in result["cases"]:
        assert case["correlation"][flair][t2] == pytest.approx(1.0, abs=1e-9)


def test_label_volumes_are_voxel_counts_times_voxel_volume(brats, brats_report):
    _, result = brats_report
    for case in result["cases"]:
        image = nib.load(brats / case["case_id"] / f"{case['case_id']}_seg.nii.gz")
        label = np.rint(np.asanyarray(image.dataobj)).astype(int)
        voxel_ml = abs(np.linalg.det(image.affine[:3, :3])) / 1000.0
        counts = np.bincount(label.ravel())
        expected = {str(v): counts[v] * voxel_ml for v in np.flatnonzero(counts) if v}
        assert case["label_voxels"] == {k: int(counts[int(k)]) for k in expected}
        assert case["label_volumes"] == pytest.approx(expected, abs=1e-4)
    assert result["volume_unit"] == "mL"
    volumes = [c["label_volumes"]["2"] for c in result["cases"] if "2" in c["label_volumes"]]
    assert result["labels"]["2"]["max"] == pytest.approx(max(volumes))


def test_histograms_count_the_mask_voxels_only(brats_report):
    _, result = brats_report
    mask_voxels = sum(case["mask_voxels"] for case in result["cases"])
    histograms = result["histograms"]["all"]
    for histogram in histograms.values():
        assert sum(histogram["all"]) == pytest.approx(mask_voxels, rel=1e-9)
        per_stratum = sum(sum(counts) for counts in histogram["strata"].values())
        assert per_stratum == pytest.approx(mask_voxels, rel=1e-9)
    # The synthetic heads lie on a zero background: it is left out of the mask.
    assert result["mask"] == "body+non-background"
    assert all(case["mask_voxels"] < 32 * 32 * 32 for case in result["cases"])

    # Direct: voxels outside the mask, however bright, are never sampled nor counted.
    rng = np.random.default_rng(0)
    image = rng.random((6, 20, 20)).astype(np.float32)
    mask = np.zeros(image.shape, dtype=bool)
    mask[1:5, 5:15, 5:15] = True
    image[~mask] = 1000.0
    label = np.zeros(image.shape, dtype=np.uint8)
    label[2:4, 8:12, 8:12] = 1
    sample = sample_case([image], label, mask, 150, case_rng(0, 0))
    assert sample.values.max() < 1.0
    assert mask.ravel()[sample.index].all()
    assert sample.weights.sum() == pytest.approx(mask.sum())
    histogram = weighted_histograms(sample.values[:, 0], sample.strata, sample.weights)
    assert sum(histogram["all"]) == pytest.approx(mask.sum())
    assert histogram["edges"][-1] < 1.0


def test_sample_is_seeded_capped_and_balanced():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(10, 40, 40)).astype(np.float32)
    label = np.zeros(image.shape, dtype=np.uint8)
    label[4:6, 10:14, 10:14] = 1  # 32 voxels
    label[:, 20:, 20:] = 2  # 4000 voxels
    mask = np.ones(image.shape, dtype=bool)
    first = sample_case([image], label, mask, 900, case_rng(7, 2))
    again = sample_case([image], label, mask, 900, case_rng(7, 2))
    other = sample_case([image], label, mask, 900, case_rng(8, 2))
    assert np.array_equal(first.index, again.index)
    assert np.array_equal(first.values, again.values)
    assert not np.array_equal(first.index, other.index)
    assert len(first) == 900
    assert np.unique(first.index).size == 900
    counts = {v: int((first.strata == v).sum()) for v in (0, 1, 2)}
    assert counts == {0: 434, 1: 32, 2: 434}  # the small label gives all it has
    assert first.weights[first.strata == 2] == pytest.approx(4000 / 434)
    assert share([5, 100, 1000], 30) == [5, 12, 13]
    assert share([5, 100], 1000) == [5, 100]


def test_voxel_cap_and_seed_of_a_whole_run(brats, tmp_path):
    args = ["inspect", "--data", str(brats), "--max-voxels", "1000", "--embedding-points", "0"]
    args += ["--examples", "0"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert main([*args, "--seed", "1", "--out", str(tmp_path / "c")]) == 0
    a, b, c = (json.loads((tmp_path / x / "inspect.json").read_text()) for x in "abc")
    assert a["sample"] == {"seed": 0, "per_case": 200, "max_voxels": 1000, "voxels": 1000}
    assert a["histograms"] == b["histograms"]
    assert a["histograms"] != c["histograms"]
    assert a["embedding"] is None and "embedding" not in a["figures"]


def test_html_references_existing_pngs(brats_report):
    out, result = brats_report
    page = (out / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    expected = [
        "histograms",
        "intensities",
        "correlation",
        "geometry",
        "label_volumes",
        "lesion_sizes",
        "embedding",
    ]
    assert {result["figures"][name] for name in expected} <= set(sources)
    assert [item["file"] for item in result["figures"]["examples"]] == [
        s for s in sources if "example" in s
    ]
    assert len(result["figures"]["examples"]) == 2
    for source in sources:
        assert not source.startswith(("/", "http", "data:"))
        assert (out / source).read_bytes().startswith(PNG_SIGNATURE)
    assert result["embedding"]["method"].startswith(("t-SNE", "PCA"))
    assert result["embedding"]["points"] == 150


def test_two_dimensional_pairs(tmp_path):
    data = tmp_path / "cxr"
    write_dataset("lung-cxr", data, 3, seed=1, size=64)
    out = tmp_path / "out"
    assert main(["inspect", "--data", str(data), "--out", str(out), *FAST]) == 0
    result = json.loads((out / "inspect.json").read_text())
    assert result["volume_unit"] == "cm²" and result["mask"] == "all"
    assert result["sequences"] == ["image"]
    for case in result["cases"]:
        assert case["dims"] == 2 and case["shape"] == [64, 64] and case["spacing"] == [1, 1]
        assert case["orientation"] == "LP"
        assert case["mask_voxels"] == 64 * 64
        mask = np.asarray(Image.open(data / f"{case['case_id']}-mask.png")) >= 128
        assert case["label_volumes"] == pytest.approx({"1": mask.sum() / 100.0})
    assert "correlation" not in result["figures"]
    assert (out / result["figures"]["embedding"]).is_file()


def test_decathlon_label_names_and_errors(tmp_path, capsys):
    data = tmp_path / "ct"
    write_dataset("lung-ct", data, 2, seed=1, size=32)
    out = tmp_path / "out"
    assert main(["inspect", "--data", str(data), "--out", str(out), *FAST]) == 0
    result = json.loads((out / "inspect.json").read_text())
    assert result["label_names"] == {"0": "background", "1": "right lung", "2": "left lung"}
    assert result["sequences"] == ["ct"]
    assert "right lung" in (out / "report.html").read_text()
    assert main(["inspect", "--data", str(data), "--out", str(out), "--max-voxels", "0"]) == 2
    assert main(["inspect", "--data", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "inspect: error:" in capsys.readouterr().err


def test_orientation_and_foreground_modes():
    def summary(case_id: str, orientation: str) -> CaseSummary:
        return CaseSummary(
            case_id, None, 3, (10, 10, 10), (1.0, 1.0, 1.0), orientation, "all", 1000,
            ("a",), {}, [[1.0]], {1: 5}, {1: 0.005}, [5.0],
        )  # fmt: skip

    cases = [summary(f"c{n}", "RAS") for n in range(3)] + [summary("odd", "LPS")]
    flag_outliers(cases)
    assert [case.flags for case in cases[:3]] == [[], [], []]
    assert cases[3].flags == ["orientation LPS (most cases RAS)"]

    image = np.zeros((4, 8, 8), dtype=np.float32)
    image[1:3, 2:6, 2:6] = 5.0
    mask, mode = foreground_mask([image], None, "non-background")
    assert mode == "non-background" and mask.sum() == 32
    mask, mode = foreground_mask([image.reshape(1, 32, 8)], None, "auto")
    assert mode == "all" and mask.all()
    with pytest.raises(ValueError, match="foreground mode"):
        foreground_mask([image], None, "skin")


@pytest.mark.shared_data
def test_real_brats_2015(tmp_path):
    data = shared_path("brats2015")
    out = tmp_path / "out"
    args = ["inspect", "--data", str(data), "--out", str(out), "--examples", "1"]
    assert main([*args, "--voxels-per-case", "2000", "--embedding-points", "200"]) == 0
    result = json.loads((out / "inspect.json").read_text())
    assert result["sequences"] == ["flair", "t1c"]
    assert len(result["cases"]) == 4 and result["flagged"] == {}
    assert set(result["labels"]) == {"1", "2", "3", "4"}
    assert 0.0 < result["correlation"][0][1] < 0.9
    case = result["cases"][0]
    assert case["shape"] == [240, 240, 155] and case["spacing"] == [1, 1, 1]
    reference = nib.load(data / case["case_id"] / "OTMultiClass.nii.gz")
    counts = np.bincount(np.rint(np.asanyarray(reference.dataobj)).astype(int).ravel())
    assert case["label_volumes"]["2"] == pytest.approx(counts[2] / 1000.0)
    # The brain (z-scored inside a constant background) is the mask, not the whole head box.
    brain = np.asanyarray(nib.load(data / case["case_id"] / "brainmask.nii.gz").dataobj) > 0
    assert case["mask_voxels"] == pytest.approx(brain.sum(), rel=0.05)


@pytest.mark.parametrize(("task", "layout"), [("brain-mri", "brainmetshare"), ("ovarian-ct", None)])
def test_other_layouts(task, layout, tmp_path):
    data = tmp_path / "data"
    write_dataset(task, data, 3, seed=4, size=24, layout=layout)
    out = tmp_path / "out"
    assert main(["inspect", "--data", str(data), "--out", str(out), *FAST]) == 0
    result = json.loads((out / "inspect.json").read_text())
    assert len(result["cases"]) == 3
    assert all(case["label_voxels"] for case in result["cases"])
    assert (out / "report.html").is_file()


def test_data_sources_are_kept_apart(tmp_path):
    for name, seed in (("one", 1), ("two", 2)):
        write_dataset("lung-cxr", tmp_path / name, 2, seed=seed, size=48)
        for path in (tmp_path / name).glob("cxr_*"):  # case ids must differ between sources
            path.rename(path.with_name(f"{name}_{path.name}"))
    config = tmp_path / "data.yaml"
    config.write_text(
        "sources:\n"
        + "".join(
            f"  - {{name: {name}, reader: image_mask_pairs, root: {tmp_path / name}}}\n"
            for name in ("one", "two")
        )
    )
    out = tmp_path / "out"
    assert main(["inspect", "--data", str(config), "--out", str(out), *FAST]) == 0
    result = json.loads((out / "inspect.json").read_text())
    assert list(result["histograms"]) == ["one", "two"]
    assert [case["source"] for case in result["cases"]] == ["one", "one", "two", "two"]
    for name in ("one", "two"):
        voxels = sum(c["mask_voxels"] for c in result["cases"] if c["source"] == name)
        assert sum(result["histograms"][name]["image"]["all"]) == pytest.approx(voxels)
