"""Damaged and invalid image files are refused where they are read, with one line naming the
file, before any output is written (Slicer's NIfTI reader alone would read a truncated file
with zeros and turn NaN/Inf into 0)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from Testing.case_files import save_nifti
from Testing.command_line import assert_one_line_error, run_cli, segment_args
from Testing.faults.support import digests
from unetseg.untrained import lung_cxr_manifest, untrained_package


def _cut(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _uncompressed(path):
    plain = path.with_name(path.name.removesuffix(".gz"))
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    path.unlink()
    return plain


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _empty(path):
    path.write_bytes(b"")
    return path


def _float_with(values, brain_case, path):
    """The case's FLAIR as float32 with ``values`` at a few voxels (None: every voxel NaN)."""
    image = brain_case.images["flair"].astype(np.float32)
    if values is None:
        image[:] = np.nan
    else:
        image[8, 16, 16 : 16 + len(values)] = values
    return save_nifti(path, image, brain_case.geometry.ijk_to_ras)


def _as_nrrd(path, brain_case, values):
    image = brain_case.images["flair"].astype(np.float32)
    image[8, 16, 16:18] = values
    nrrd = path.with_name(path.name.replace(".nii.gz", ".nrrd"))
    itk = sitk.GetImageFromArray(image)
    sitk.WriteImage(itk, str(nrrd), True)
    path.unlink()
    return nrrd


CASES = {
    # case: (how the FLAIR file is damaged, phrases of the error line)
    "truncated .nii.gz": (lambda p, c: _cut(p), ("truncated", "t2f.nii.gz")),
    "truncated .nii": (lambda p, c: _cut(_uncompressed(p)), ("truncated", "t2f.nii'")),
    "flipped byte in .nii.gz": (lambda p, c: _flip_byte(p), ("damaged or truncated",)),
    "NaN voxels": (lambda p, c: _float_with([np.nan, np.nan], c, p), ("2 NaN and 0 infinite",)),
    "infinite voxels": (lambda p, c: _float_with([np.inf, -np.inf], c, p), ("2 infinite",)),
    "all voxels NaN": (lambda p, c: _float_with(None, c, p), ("16384 NaN", "t2f.nii.gz")),
    "empty file": (lambda p, c: _empty(p), ("Cannot read", "t2f.nii.gz")),
    "NaN voxels in NRRD": (lambda p, c: _as_nrrd(p, c, np.nan), ("'flair' contains NaN",)),
    "truncated NRRD": (lambda p, c: _cut(_as_nrrd(p, c, 1.0)), ("Cannot read", "t2f.nrrd")),
    "all voxels zero": (
        lambda p, c: save_nifti(p, np.zeros((16, 32, 32), np.int16), c.geometry.ijk_to_ras),
        ("'flair' is empty (all voxels are zero)",),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_input_is_refused_with_one_line(
    case, brain_model, brain_case, case_files, tmp_path, capsys
):
    damage, phrases = CASES[case]
    flair = damage(case_files["flair"], brain_case)
    inputs = [case_files["t1c"], flair]
    before = digests(inputs)
    output = tmp_path / "out" / "r.seg.nrrd"

    code, _, err = run_cli(
        capsys, *segment_args(brain_model.path, inputs, output, "--device", "cpu")
    )

    assert_one_line_error(code, err, *phrases)
    assert not output.parent.exists() or not any(output.parent.iterdir())
    assert digests(inputs) == before


def test_truncated_png_is_refused(tmp_path, capsys):
    model = untrained_package(tmp_path / "cxr", lung_cxr_manifest((4, 8)))
    image = tmp_path / "chest-xray.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 96), dtype=np.uint8)).save(image)
    _cut(image, 0.6)
    output = tmp_path / "out.seg.nrrd"

    code, _, err = run_cli(capsys, *segment_args(model.path, [image], output, "--device", "cpu"))

    assert_one_line_error(code, err, "Cannot read image", "chest-xray.png")
    assert not output.exists()
