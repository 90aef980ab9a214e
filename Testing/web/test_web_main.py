"""The command line of the web face (``python -m unetseg.web``): defaults and refusals."""

from __future__ import annotations

import importlib.util

import pytest

from unetseg.web.__main__ import _parser, main


def test_binds_to_localhost_by_default():
    args = _parser().parse_args([])
    assert (args.host, args.port, args.max_upload_mb) == ("127.0.0.1", 8080, 1024)


def test_bad_options_are_one_line_and_exit_code_2(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().endswith("is not a folder")
    assert main(["--data", str(tmp_path), "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb must be positive" in capsys.readouterr().err


@pytest.mark.skipif(
    importlib.util.find_spec("trame_slicer") is not None, reason="the web extra is installed"
)
def test_without_the_web_extra_it_says_what_to_install(capsys):
    assert main(["--port", "0"]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "make web" in error
