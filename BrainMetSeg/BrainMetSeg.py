"""BrainMetSeg: brain metastasis segmentation on multi-sequence MRI (3D Slicer module).

The panel, parameter node and model handling are shared by the UNetSeg modules
(``unetseg.gui``); this file names the module, chooses its models and holds its self-test.
"""

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from unetseg.gui.modelCatalog import BRAIN_MRI_MODELS
from unetseg.gui.moduleLogic import SegmentationModuleLogic
from unetseg.gui.moduleWidget import SegmentationModuleWidget
from unetseg.gui.sampleRegistration import registerSampleData


class BrainMetSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Brain Metastasis Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["UNetSeg contributors"]
        self.parent.helpText = _(
            "Segments brain metastases (and surrounding oedema, depending on the model) on MRI "
            "with a U-Net. Load the sequences the model asks for (e.g. T1 post-contrast, FLAIR), "
            "check the automatic assignment, and click Segment. A missing optional sequence is "
            "allowed and reported. The result has one segment per label with standard "
            "terminology, and a per-lesion table with volumes. For research use only."
        )
        self.parent.acknowledgementText = _(
            "UNetSeg shares one segmentation engine between 3D Slicer, a headless command line "
            "and its training package. Model licences are shown with each model."
        )
        # Real sample images of this module's bundled models, in the Sample Data module.
        slicer.app.connect("startupCompleted()", lambda: registerSampleData(("brain-tumor-mri",)))


class BrainMetSegLogic(SegmentationModuleLogic):
    """Lists MR models coded for the brain; ``run(model, inputNodes, options)`` runs one
    without the GUI (see ``SegmentationModuleLogic``)."""

    modelFilter = BRAIN_MRI_MODELS


class BrainMetSegWidget(SegmentationModuleWidget):
    def createLogic(self) -> BrainMetSegLogic:
        return BrainMetSegLogic()


class BrainMetSegTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SampleCaseWithMissingOptionalSequence()

    def test_SampleCaseWithMissingOptionalSequence(self):
        """Untrained 4-sequence sample model on phantoms, T2 left out: checks the plumbing
        (background job, segments, lesion table, missing input report), not accuracy."""
        from unetseg.gui.sampleModels import BRAIN_METASTASES_SAMPLE
        from unetseg.gui.selfTest import runModuleSelfTest

        runModuleSelfTest(self, BrainMetSegLogic(), BRAIN_METASTASES_SAMPLE, omit=("t2",))
