"""Installing torch and the engine's other Python packages in Slicer, after asking the user.

Called when the user acts (opening the model list, clicking Segment), never at import time.
torch is installed by the PyTorch extension, which picks the build that fits the GPU driver.
"""

from __future__ import annotations

import importlib
import logging

import qt
import slicer
from slicer.i18n import tr as _

from unetseg.gui.dependencies import (
    OPENVINO_REQUIREMENTS,
    PIP_REQUIREMENTS,
    TORCH_REQUIREMENT,
    missingPackages,
)

#: QSettings key remembering that the user declined OpenVINO (not asked again).
OPENVINO_DECLINED_SETTING = "UNetSeg/OpenVinoDeclined"


def ensurePipPackages() -> bool:
    """True when the pip-installed packages can be imported; if some are missing, ask the user
    and install them. False when the user declines (nothing is installed then)."""
    missing = missingPackages(tuple(PIP_REQUIREMENTS))
    if not missing:
        return True
    requirements = [PIP_REQUIREMENTS[name] for name in missing]
    question = _(
        "UNetSeg needs the Python packages {packages}, which are not installed.\n\n"
        "Install them now from the Python Package Index? This takes about a minute."
    ).format(packages=", ".join(requirements))
    if not slicer.util.confirmOkCancelDisplay(question, windowTitle=_("Install Python packages")):
        return False
    with slicer.util.WaitCursor():
        slicer.util.pip_install(requirements)
    importlib.invalidate_caches()
    return not missingPackages(tuple(PIP_REQUIREMENTS))


def ensureTorch() -> bool:
    """True when torch can be imported; otherwise install it through the PyTorch extension
    (which asks the user first). False when the extension is missing or the user declines."""
    if not missingPackages(("torch",)):
        return True
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay(
            _(
                "UNetSeg needs PyTorch. Install the 'PyTorch' extension with the Extensions "
                "Manager, restart Slicer and try again."
            )
        )
        return False
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=True, torchVersionRequirement=TORCH_REQUIREMENT
    )
    if torch is None:
        return False
    logging.info(
        "UNetSeg: torch %s installed, CUDA available: %s",
        torch.__version__,
        torch.cuda.is_available(),
    )
    return True


def offerOpenVino(backend: str, device: str) -> bool:
    """Before a run: when it could use OpenVINO on the CPU (backend "auto" or "openvino", device
    not CUDA; for backend "auto", device "auto" not finding a GPU) and OpenVINO is missing, ask
    once whether to install it. Returns False only when the run cannot go on (backend
    "openvino" and the user declines); "auto" then uses torch. Call after ``ensureTorch``."""
    missing = missingPackages(tuple(OPENVINO_REQUIREMENTS))
    if not missing or backend == "torch" or device.startswith("cuda"):
        return True
    if backend == "auto":
        from unetseg.engine.device import select_device

        if select_device(device).type == "cuda":  # "auto" runs torch on the GPU
            return True
    settings = qt.QSettings()
    if backend == "auto" and settings.value(OPENVINO_DECLINED_SETTING, False) in (True, "true"):
        return True
    question = _(
        "OpenVINO runs the models on the CPU about twice as fast as PyTorch. Install it now "
        "from the Python Package Index ({packages}, about 60 MB)?"
    ).format(packages=", ".join(OPENVINO_REQUIREMENTS[name] for name in missing))
    if not slicer.util.confirmYesNoDisplay(question, windowTitle=_("Faster CPU segmentation")):
        settings.setValue(OPENVINO_DECLINED_SETTING, True)
        return backend == "auto"
    with slicer.util.WaitCursor():
        slicer.util.pip_install([OPENVINO_REQUIREMENTS[name] for name in missing])
    importlib.invalidate_caches()
    return True
