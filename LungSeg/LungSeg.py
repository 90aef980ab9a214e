"""LungSeg: left and right lung segmentation on CT and chest X-ray (3D Slicer module).

The panel, parameter node and model handling are shared by the UNetSeg modules
(``unetseg.gui``); this file names the module, chooses its models and holds its self-test.
"""

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from unetseg.gui.modelCatalog import LUNG_MODELS
from unetseg.gui.moduleLogic import SegmentationModuleLogic
from unetseg.gui.moduleWidget import SegmentationModuleWidget
from unetseg.gui.sampleRegistration import registerSampleData


class LungSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Lung Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["UNetSeg contributors"]
        self.parent.helpText = _(
            "Segments the right and left lung with a U-Net, on chest CT (3D models) or on a "
            "chest radiograph (2D models, CR or DX: load the image as a single-slice volume). "
            "Choose the model that fits the image, check the input and click Segment. The "
            "result has one segment per lung with standard terminology, with its volume (CT) "
            "or its area (X-ray). For research use only."
        )
        self.parent.acknowledgementText = _(
            "UNetSeg shares one segmentation engine between 3D Slicer, a headless command line "
            "and its training package. Model licences are shown with each model."
        )
        # Real sample images of this module's bundled models, in the Sample Data module.
        slicer.app.connect(
            "startupCompleted()", lambda: registerSampleData(("lung-ct", "lung-cxr"))
        )


class LungSegLogic(SegmentationModuleLogic):
    """Lists CT, CR and DX models coded for the lung; ``run(model, inputNodes, options)`` runs
    one without the GUI (see ``SegmentationModuleLogic``)."""

    modelFilter = LUNG_MODELS


class LungSegWidget(SegmentationModuleWidget):
    def createLogic(self) -> LungSegLogic:
        return LungSegLogic()


class LungSegTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleCT()
        self.setUp()
        self.test_SampleChestXray()

    def test_SampleCT(self):
        """Untrained 3D CT sample model on a phantom: plumbing only, not accuracy."""
        from unetseg.gui.sampleModels import LUNG_CT_SAMPLE
        from unetseg.gui.selfTest import runModuleSelfTest

        runModuleSelfTest(self, LungSegLogic(), LUNG_CT_SAMPLE)

    def test_SampleChestXray(self):
        """Untrained 2D chest X-ray sample model on a single-slice phantom: plumbing only."""
        from unetseg.gui.sampleModels import CHEST_XRAY_SAMPLE
        from unetseg.gui.selfTest import runModuleSelfTest

        runModuleSelfTest(self, LungSegLogic(), CHEST_XRAY_SAMPLE)
