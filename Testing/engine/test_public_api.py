"""The documented engine API resolves, and importing the package alone stays torch-free."""

import subprocess
import sys

import pytest

import unetseg.engine as engine


@pytest.mark.parametrize("name", engine.__all__)
def test_every_documented_name_resolves(name):
    assert getattr(engine, name) is not None
    assert name in engine.__doc__


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Unet'"):
        _ = engine.Unet


def test_import_does_not_load_torch():
    code = "import sys, unetseg.engine; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
