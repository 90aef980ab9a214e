"""Python packages the engine needs beyond what 3D Slicer bundles (plain Python).

Slicer ships numpy, scipy, SimpleITK and pydicom. torch comes from the PyTorch extension
(``EXTENSION_DEPENDS PyTorch``); the others are pip-installed after asking the user
(``unetseg.gui.torchSetup``). Keep these in step with pyproject's dependencies.
"""

from __future__ import annotations

import importlib.util

#: Version range of torch to install through the PyTorch extension.
TORCH_REQUIREMENT = ">=2.2"
#: Import name -> pip requirement, for packages installed with pip.
PIP_REQUIREMENTS = {"jsonschema": "jsonschema>=4.18", "safetensors": "safetensors>=0.4"}
#: Import name -> pip requirement of the optional OpenVINO backend (pyproject's ``openvino``
#: extra): offered once, when a CPU run could use it.
OPENVINO_REQUIREMENTS = {
    "openvino": "openvino>=2025.1",
    "onnx": "onnx>=1.16",
    "onnxscript": "onnxscript>=0.3",
}


def missingPackages(names: tuple[str, ...] = ("torch", *PIP_REQUIREMENTS)) -> list[str]:
    """Import names among ``names`` that cannot be imported (checked without importing)."""
    return [name for name in names if importlib.util.find_spec(name) is None]
