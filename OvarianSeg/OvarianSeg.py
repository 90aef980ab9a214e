"""OvarianSeg: ovarian cancer segmentation on CT (3D Slicer module).

The panel, parameter node and model handling are shared by the UNetSeg modules
(``unetseg.gui``); this file names the module, chooses its models and holds its self-test.
"""

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from unetseg.gui.modelCatalog import OVARIAN_CT_MODELS
from unetseg.gui.moduleLogic import SegmentationModuleLogic
from unetseg.gui.moduleWidget import SegmentationModuleWidget


class OvarianSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Ovarian Cancer Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["UNetSeg contributors"]
        self.parent.helpText = _(
            "Segments primary ovarian cancer and metastatic disease on contrast-enhanced CT of "
            "the abdomen and pelvis with a U-Net. Select the CT, click Segment, and review the "
            "segments (standard terminology) and the per-lesion table with volumes. For "
            "research use only. The bundled model (ovarian-ct) is a demonstration model, not "
            "trained on patient images: it learnt from synthetic pelvic phantoms only, because "
            "no labelled ovarian CT was available, and its output on real CT is not meaningful. "
            "Train your own with the Training package (Training/configs/ovarian_ct.yaml)."
        )
        self.parent.acknowledgementText = _(
            "UNetSeg shares one segmentation engine between 3D Slicer, a headless command line "
            "and its training package. Model licences are shown with each model."
        )


class OvarianSegLogic(SegmentationModuleLogic):
    """Lists CT models coded for the ovary; ``run(model, inputNodes, options)`` runs one
    without the GUI (see ``SegmentationModuleLogic``)."""

    modelFilter = OVARIAN_CT_MODELS


class OvarianSegWidget(SegmentationModuleWidget):
    def createLogic(self) -> OvarianSegLogic:
        return OvarianSegLogic()


class OvarianSegTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleCase()

    def test_SampleCase(self):
        """Untrained CT sample model on a phantom: checks the plumbing (background job,
        segments, lesion table), not accuracy."""
        from unetseg.gui.sampleModels import OVARIAN_CT_SAMPLE
        from unetseg.gui.selfTest import runModuleSelfTest

        runModuleSelfTest(self, OvarianSegLogic(), OVARIAN_CT_SAMPLE)
