"""Upload storage of the web face (``unetseg.web.uploads``): no server, no browser."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from unetseg.web.uploads import UploadedFile, UploadError, UploadStore, extract_zip, safe_name


def _zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path):
    return UploadStore(tmp_path / "uploads", max_bytes=10_000)


def _files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_files_and_zip_are_stored_in_a_new_folder(store):
    archive = _zip({"series/a.dcm": b"1", "series/b.dcm": b"2", "./c.dcm": b"3"})
    folder = store.store(
        [UploadedFile("scan.nii.gz", b"nifti"), UploadedFile("dicom.zip", archive)]
    )
    assert folder.parent == store.root
    assert _files_under(folder) == [
        "dicom/c.dcm",
        "dicom/series/a.dcm",
        "dicom/series/b.dcm",
        "scan.nii.gz",
    ]
    assert store.store([UploadedFile("scan.nii.gz", b"nifti")]) != folder


@pytest.mark.parametrize(
    "entry",
    ["../evil.txt", "series/../../evil.txt", "/etc/evil.txt", "C:/evil.txt", "..\\evil.txt"],
)
def test_zip_entries_outside_the_folder_refuse_the_whole_archive(store, tmp_path, entry):
    archive = _zip({"ok.dcm": b"fine", entry: b"evil"})
    with pytest.raises(UploadError, match=r"absolute path|outside the upload folder"):
        store.store([UploadedFile("case.zip", archive)])
    assert not list(tmp_path.rglob("evil.txt"))
    assert not list(tmp_path.rglob("ok.dcm")), "nothing is extracted from a refused archive"
    assert not list(store.root.iterdir()), "the refused upload's folder is removed"


def test_zip_links_are_refused(store):
    with pytest.raises(UploadError, match="is a link"):
        store.store([UploadedFile("case.zip", _zip({"a.dcm": b"1"}, links=("link.dcm",)))])


def test_size_limits(store, tmp_path):
    with pytest.raises(UploadError, match="too large"):
        store.store([UploadedFile("big.nrrd", b"x" * 10_001)])
    with pytest.raises(UploadError, match="too large"):
        store.check_sizes([6000, 6000])
    # A small archive that unpacks to more than 4x the limit (a zip bomb) is refused.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.dcm", b"\0" * 50_000)
    assert len(buffer.getvalue()) < 10_000
    with pytest.raises(UploadError, match="unpacks to"):
        extract_zip(buffer.getvalue(), tmp_path / "out", max_bytes=10_000)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"x", "not a supported file"),
        ("broken.zip", b"PK\x03\x04 not really", "Not a valid zip archive"),
        ("", b"x", "Refused file name"),
        (".hidden.nii", b"x", "Refused file name"),
    ],
)
def test_bad_uploads_are_upload_errors(store, name, content, message):
    with pytest.raises(UploadError, match=message):
        store.store([UploadedFile(name, content)])


def test_client_paths_are_reduced_to_their_name():
    assert safe_name("../../etc/scan.nii.gz") == "scan.nii.gz"
    assert safe_name("C:\\Users\\me\\scan.nrrd") == "scan.nrrd"
    with pytest.raises(UploadError):
        safe_name("../..")


def test_no_files_and_duplicates(store):
    with pytest.raises(UploadError, match="No file"):
        store.store([])
    with pytest.raises(UploadError, match="same name"):
        store.store([UploadedFile("a.nrrd", b"1"), UploadedFile("dir/a.nrrd", b"2")])


def test_cleanup_removes_an_owned_root():
    owned = UploadStore()
    owned.store([UploadedFile("a.nrrd", b"1")])
    owned.cleanup()
    assert not owned.root.exists()


def test_prune_keeps_the_upload_in_use(store):
    old = store.store([UploadedFile("a.nrrd", b"1")])
    current = store.store([UploadedFile("b.nrrd", b"2")])
    store.prune(keep=[current])
    assert not old.exists() and (current / "b.nrrd").exists()
    store.prune()
    assert not current.exists()


def test_zip_with_a_repeated_entry_is_refused(store):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning, match="Duplicate"):
        archive.writestr("a.dcm", b"1")
        archive.writestr("a.dcm", b"2")
    with pytest.raises(UploadError, match="appears twice"):
        store.store([UploadedFile("case.zip", buffer.getvalue())])
    assert not list(store.root.iterdir())
