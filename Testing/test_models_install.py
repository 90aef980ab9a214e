"""``python -m unetseg models install``: package folders and zip archives are validated (schema,
SHA-256, no pickle, safe archive paths) before anything is written, then installed atomically as
``<folder>/<model id>/`` where the registry finds them."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from Testing.command_line import run_cli
from unetseg.engine import install
from unetseg.engine.package import ModelPackage
from unetseg.engine.registry import MODEL_PATH_ENV, list_models, resolve_model
from unetseg.untrained import lung_cxr_manifest, untrained_package

MODEL_ID = "demo-lung-cxr-untrained"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> ModelPackage:
    """A small untrained 2D package."""
    return untrained_package(tmp_path_factory.mktemp("source") / "cxr", lung_cxr_manifest((4, 8)))


@pytest.fixture(autouse=True)
def _own_environment(tmp_path, monkeypatch) -> None:
    """No model path from the environment, and a home folder of the test's own."""
    monkeypatch.delenv(MODEL_PATH_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def assert_refused(code: int, err: str, *fragments: str) -> None:
    """Exit code 2 and one error line holding every fragment."""
    assert code == 2
    assert err.startswith("unetseg models: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err


def weights_of(folder: Path) -> bytes:
    return (folder / "weights.safetensors").read_bytes()


def zip_package(folder: Path, archive: Path, prefix: str = "", **extra: bytes) -> Path:
    """Zip the files of ``folder`` as ``<prefix><name>``, plus ``extra`` entries."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for file in sorted(folder.iterdir()):
            zipped.write(file, prefix + file.name)
        for name, data in extra.items():
            zipped.writestr(name, data)
    return archive


def copy_package(package: ModelPackage, folder: Path) -> Path:
    shutil.copytree(package.path, folder)
    return folder


def set_weights(folder: Path, data: bytes) -> None:
    """Replace the weights with ``data`` and record its SHA-256 in model.json."""
    (folder / "weights.safetensors").write_bytes(data)
    manifest = json.loads((folder / "model.json").read_text())
    manifest["weights"]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "model.json").write_text(json.dumps(manifest))


class MarkerPayload:
    """Unpickling this creates the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_install_folder_then_listed(package, tmp_path, capsys):
    dest = tmp_path / "models"

    code, out, err = run_cli(capsys, "models", "install", package.path, "--to", dest)

    assert code == 0, err
    installed = dest / MODEL_ID
    assert out.splitlines() == [
        f"Installed {MODEL_ID} 0.0.1 in {installed}",
        f"{dest} is not in the model search path: list it with python -m unetseg models "
        f"--path {dest}, or add it to UNETSEG_MODEL_PATH",
    ]
    assert sorted(p.name for p in dest.iterdir()) == [MODEL_ID]
    assert weights_of(installed) == weights_of(package.path)
    assert resolve_model(MODEL_ID, [dest]).path == installed
    code, out, _ = run_cli(capsys, "models", "--path", dest)
    assert code == 0 and f"{MODEL_ID} 0.0.1" in out and str(installed) in out


@pytest.mark.parametrize("prefix", ["", "cxr-1.0/"], ids=["top-level", "one-folder"])
def test_install_zip(package, tmp_path, capsys, prefix):
    # Finder's resource forks (__MACOSX/) are ignored.
    archive = zip_package(
        package.path, tmp_path / "cxr.zip", prefix, **{"__MACOSX/._model.json": b"\0\5"}
    )
    dest = tmp_path / "models"

    code, out, err = run_cli(capsys, "models", "install", archive, "--to", dest)

    assert code == 0, err
    installed = dest / MODEL_ID
    assert out.startswith(f"Installed {MODEL_ID} 0.0.1 in {installed}\n")
    assert sorted(p.name for p in installed.iterdir()) == ["model.json", "weights.safetensors"]
    assert [p.path for p in list_models([dest])] == [installed]
    installed_package = resolve_model(MODEL_ID, [dest])
    assert installed_package.read_weights() == weights_of(package.path)


def symlink_entry(name: str) -> zipfile.ZipInfo:
    """A zip entry marked as a symbolic link (its data is the link target)."""
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("../evil.txt", "unsafe path '../evil.txt'"),
        ("pkg/../../evil.txt", "unsafe path 'pkg/../../evil.txt'"),
        ("/tmp/evil.txt", "unsafe path '/tmp/evil.txt'"),
        ("C:/evil.txt", "unsafe path 'C:/evil.txt'"),
        (symlink_entry("pkg/evil.txt"), "'pkg/evil.txt', a link or special file"),
    ],
    ids=["parent", "nested-parent", "absolute", "drive", "symlink"],
)
def test_unsafe_zip_refused_and_nothing_written(package, tmp_path, capsys, entry, message):
    archive = zip_package(package.path, tmp_path / "evil.zip", "pkg/")
    with zipfile.ZipFile(archive, "a") as zipped:
        zipped.writestr(entry, b"/etc/passwd")
    dest = tmp_path / "out" / "models"

    code, _, err = run_cli(capsys, "models", "install", archive, "--to", dest)

    assert_refused(code, err, message)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.rglob("evil.txt")) == []


def test_zip_larger_than_the_limit_refused(package, tmp_path, capsys, monkeypatch):
    archive = zip_package(package.path, tmp_path / "big.zip")
    monkeypatch.setattr(install, "MAX_EXTRACTED_BYTES", 1000)

    code, _, err = run_cli(capsys, "models", "install", archive, "--to", tmp_path / "models")

    assert_refused(code, err, "more than the 1000 a model package may hold")
    assert not (tmp_path / "models").exists()


def test_zip_without_a_package_refused(package, tmp_path, capsys):
    archive = zip_package(package.path, tmp_path / "two.zip", "a/", **{"b/readme.txt": b"hi"})

    code, _, err = run_cli(capsys, "models", "install", archive, "--to", tmp_path / "models")

    assert_refused(code, err, "holds no model package", "in its one top-level folder")


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_weights_not_matching_their_checksum_refused(package, tmp_path, capsys, as_zip):
    folder = copy_package(package, tmp_path / "damaged")
    data = bytearray(weights_of(folder))
    data[-1] ^= 0xFF  # same size, so only the checksum tells
    (folder / "weights.safetensors").write_bytes(bytes(data))
    source = zip_package(folder, tmp_path / "damaged.zip") if as_zip else folder

    code, _, err = run_cli(capsys, "models", "install", source, "--to", tmp_path / "models")

    assert_refused(code, err, "is corrupt or was modified after packaging", "SHA-256")
    assert not (tmp_path / "models").exists()


def test_pickle_weights_refused_without_unpickling(package, tmp_path, capsys):
    marker = tmp_path / "unpickled"
    folder = copy_package(package, tmp_path / "pickled")
    set_weights(folder, pickle.dumps(MarkerPayload(marker)))
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(pickle.dumps(MarkerPayload(marker)))

    for source in (folder, zip_package(folder, tmp_path / "pickled.zip"), checkpoint):
        code, _, err = run_cli(capsys, "models", "install", source, "--to", tmp_path / "models")

        assert_refused(code, err, "is a pickle file", "can run arbitrary code")
    assert not marker.exists()
    assert not (tmp_path / "models").exists()


def test_links_install_their_file_inside_the_package_only(package, tmp_path, capsys):
    folder = copy_package(package, tmp_path / "linked")
    (folder / "card.md").write_text("# card")
    (folder / "README.md").symlink_to("card.md")
    dest = tmp_path / "models"

    code, _, err = run_cli(capsys, "models", "install", folder, "--to", dest)

    assert code == 0, err
    assert not (dest / MODEL_ID / "README.md").is_symlink()
    assert (dest / MODEL_ID / "README.md").read_text() == "# card"

    (tmp_path / "secret.txt").write_text("not for the package")
    (folder / "extra.txt").symlink_to(tmp_path / "secret.txt")
    code, _, err = run_cli(capsys, "models", "install", folder, "--to", dest, "--overwrite")

    assert_refused(code, err, "only links to files inside the package are installed")
    assert not (dest / MODEL_ID / "extra.txt").exists()


def test_existing_id_replaced_only_with_overwrite(package, tmp_path, capsys):
    other = untrained_package(tmp_path / "other", lung_cxr_manifest((4, 8)), seed=1)
    dest = tmp_path / "models"
    installed = dest / MODEL_ID
    assert run_cli(capsys, "models", "install", package.path, "--to", dest)[0] == 0

    code, _, err = run_cli(capsys, "models", "install", other.path, "--to", dest)

    assert_refused(code, err, f"already installed in {installed}", "--overwrite")
    assert weights_of(installed) == weights_of(package.path)

    code, out, err = run_cli(capsys, "models", "install", other.path, "--to", dest, "--overwrite")

    assert code == 0, err
    assert out.startswith(f"Installed {MODEL_ID} 0.0.1 in {installed}\n")
    assert weights_of(installed) == weights_of(other.path)
    assert sorted(p.name for p in dest.iterdir()) == [MODEL_ID]  # no staging or backup left


def test_folder_that_is_not_a_package_never_replaced(package, tmp_path, capsys):
    (tmp_path / "models" / MODEL_ID).mkdir(parents=True)
    (tmp_path / "models" / MODEL_ID / "notes.txt").write_text("mine")

    code, _, err = run_cli(
        capsys, "models", "install", package.path, "--to", tmp_path / "models", "--overwrite"
    )

    assert_refused(code, err, "is not a model package folder; refusing to replace it")
    assert (tmp_path / "models" / MODEL_ID / "notes.txt").read_text() == "mine"


def test_destination_is_the_first_environment_folder(package, tmp_path, capsys, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv(MODEL_PATH_ENV, f"{first}{os.pathsep}{second}")

    code, out, err = run_cli(capsys, "models", "install", package.path)

    assert code == 0, err
    assert out.splitlines() == [
        f"Installed {MODEL_ID} 0.0.1 in {first / MODEL_ID}",
        f"python -m unetseg models now lists it (model id {MODEL_ID})",
    ]
    assert not second.exists()
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and str(first / MODEL_ID) in out


def test_destination_defaults_to_the_home_folder(package, tmp_path, capsys):
    code, out, err = run_cli(capsys, "models", "install", package.path / "model.json")

    assert code == 0, err
    installed = tmp_path / "home" / ".unetseg" / "models" / MODEL_ID
    assert out.startswith(f"Installed {MODEL_ID} 0.0.1 in {installed}\n")
    assert resolve_model(MODEL_ID).path == installed
