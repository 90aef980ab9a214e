"""Finding and loading volumes, and the model catalog of the web face (no server, no browser)."""

from __future__ import annotations

import pytest

pytest.importorskip("slicer", reason="needs slicer-core")

from unetseg.host.scene_io import newScene
from unetseg.sampledata import copy_sample, get_sample
from unetseg.web import catalog, sources


def test_folders_offer_volumes_and_2d_images(tmp_path):
    copy_sample("chest-xray", tmp_path)
    copy_sample("chest-ct", tmp_path)
    (tmp_path / "chest-ct" / "notes.txt").write_text("not an image")
    found = sources.find([tmp_path / "chest-xray", tmp_path / "chest-ct"])
    assert [sources.describe(s) for s in found] == ["MCUCXR_0020_0.jpg", "chest_ct.nii.gz"]
    with pytest.raises(FileNotFoundError):
        sources.find([tmp_path / "chest-ct" / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        sources.find([tmp_path / "empty"])


def test_loading_names_and_describes_each_volume(tmp_path):
    scene = newScene()
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a NIfTI file")
    found = sources.find([*get_sample("chest-xray").paths, broken])
    loaded, errors = sources.load(scene, found)
    assert [item.name for item in loaded] == ["MCUCXR_0020_0"]
    node = scene.GetNodeByID(loaded[0].node_id)
    assert node.GetName() == "MCUCXR_0020_0" and loaded[0].description == "MCUCXR_0020_0.jpg"
    assert len(errors) == 1 and errors[0].startswith("broken.nii.gz: ")


def test_data_folders_stay_inside_the_data_root(tmp_path):
    (tmp_path / "data" / "case1" / "dicom").mkdir(parents=True)
    (tmp_path / "data" / ".hidden").mkdir()
    (tmp_path / "outside").mkdir()
    root = tmp_path / "data"
    assert sources.data_folders(root) == [".", "case1", "case1/dicom"]
    assert sources.data_folders(root, limit=2) == [".", "case1"]
    (root / "case1" / "link").symlink_to(tmp_path / "outside")  # offered, not walked
    (root / "case10" / "a").mkdir(parents=True)
    expected = [".", "case1", "case1/dicom", "case1/link", "case10", "case10/a"]
    assert sources.data_folders(root) == expected
    (tmp_path / ".cache" / "data" / "case2").mkdir(parents=True)  # a hidden folder above
    assert sources.data_folders(tmp_path / ".cache" / "data") == [".", "case2"]
    assert sources.data_folders(None) == []
    assert sources.resolve_data_folder(root, "case1") == (root / "case1").resolve()
    for bad in ("../outside", "/etc", "missing"):
        with pytest.raises(ValueError, match="not a folder inside"):
            sources.resolve_data_folder(root, bad)
    with pytest.raises(ValueError, match="without --data"):
        sources.resolve_data_folder(None, ".")


def test_catalog_offers_the_modules_models_and_matches_inputs():
    models = catalog.Catalog()
    assert [m.id for m in models.models_for("lung")] == ["lung-ct", "lung-cxr"]
    assert [m.id for m in models.models_for("brain")] == ["brain-tumor-mri"]
    assert models.task_of("ovarian-ct") == "ovarian" and models.models_for("nope") == []
    assert "Intended use" in models.card_html(models.get("lung-cxr"))
    with pytest.raises(KeyError):
        models.get("no-such-model")

    scene = newScene()
    loaded, _ = sources.load(scene, sources.find(get_sample("brain-mri-pgbm006").paths))
    package = models.get("brain-tumor-mri")
    chosen = catalog.auto_match(package, [scene.GetNodeByID(s.node_id) for s in loaded])
    by_name = {s.node_id: s.name for s in loaded}
    assert {k: by_name.get(v) for k, v in chosen.items()} == {
        "t1c": "T1post",
        "flair": "FLAIRreg",
        "t1": "T1prereg",
        "t2": "T2reg",
    }
    assert set(catalog.chosen_nodes(package, chosen, scene)) == {"t1c", "flair", "t1", "t2"}
    with pytest.raises(ValueError, match="Choose a volume"):
        catalog.chosen_nodes(package, {**chosen, "t1c": None}, scene)
    with pytest.raises(ValueError, match="two inputs"):
        catalog.chosen_nodes(package, {**chosen, "t1": chosen["t1c"]}, scene)
