"""The segmentation panel shared by the UNetSeg modules.

A module's Widget subclasses ``SegmentationModuleWidget`` and returns its Logic (which carries
the module's model filter) from ``createLogic``. The panel follows Slicer's scripted-module
template: a ``SegmentationParameterNode`` bound to ``Resources/UI/SegmentationPanel.ui`` through
``SlicerParameterName``; the engine runs in a background job polled by a Qt timer, so the GUI
stays responsive and the Segment button turns into Cancel.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from unetseg.engine.matching import MatchResult, match_inputs
from unetseg.engine.options import MAX_OVERLAP
from unetseg.gui import dicomBrowser, torchSetup
from unetseg.gui.dependencies import PIP_REQUIREMENTS
from unetseg.gui.modelCatalog import modelSummaryHtml
from unetseg.gui.parameters import INPUT_SLOTS, SegmentationParameterNode
from unetseg.gui.runControls import RunControlsMixin
from unetseg.host.volumes import SERIES_DESCRIPTION_ATTRIBUTE, describeVolume

if TYPE_CHECKING:
    from unetseg.engine.package import ModelPackage
    from unetseg.gui.jobPoller import JobPoller
    from unetseg.gui.moduleLogic import SegmentationModuleLogic

PANEL_UI = Path(__file__).parent / "Resources" / "UI" / "SegmentationPanel.ui"
#: QSettings key of the user's model folders (shared by the UNetSeg modules).
MODEL_FOLDERS_SETTING = "UNetSeg/ModelFolders"
SLOT_PARAMETERS = tuple(f"input{slot}" for slot in range(INPUT_SLOTS))
#: Volume classes that are not images to segment (also hidden by the .ui input selectors);
#: RGB vector volumes (e.g. a radiograph from a PNG) are kept.
NON_IMAGE_VOLUMES = (
    "vtkMRMLLabelMapVolumeNode",
    "vtkMRMLDiffusionWeightedVolumeNode",
    "vtkMRMLTensorVolumeNode",
)


class SegmentationModuleWidget(RunControlsMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Model choice, input slots, output and options; Segment/Cancel, progress and results
    come from ``RunControlsMixin``."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: SegmentationModuleLogic | None = None
        self._parameterNode: SegmentationParameterNode | None = None
        self._parameterNodeGuiTag = None
        self._models: list[ModelPackage] | None = None  # None: not listed yet
        self._poller: JobPoller | None = None
        self._discardResult = False
        self._lesionCentroids: list[tuple[float, float, float]] = []

    def createLogic(self) -> SegmentationModuleLogic:
        """The module's Logic; implemented by each module's Widget."""
        raise NotImplementedError

    # --- Set-up and scene -------------------------------------------------------------------

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(str(PANEL_UI))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.createLogic()
        self._slotLabels = [
            self.ui.input0Label,
            self.ui.input1Label,
            self.ui.input2Label,
            self.ui.input3Label,
        ]
        self._slotSelectors = [
            self.ui.input0Selector,
            self.ui.input1Selector,
            self.ui.input2Selector,
            self.ui.input3Selector,
        ]
        self.ui.progressBar.hide()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.modelComboBox.currentIndexChanged.connect(self.onModelSelected)
        self.ui.addModelFolderButton.clicked.connect(self.onAddModelFolder)
        self.ui.autoFillButton.clicked.connect(self.onAutoFill)
        self.ui.loadDicomButton.clicked.connect(self.onLoadFromDicom)
        self.ui.segmentButton.clicked.connect(self.onSegmentButton)
        self.ui.lesionsTable.cellDoubleClicked.connect(self.onLesionDoubleClicked)

        self.initializeParameterNode()
        self.refreshModels()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        if self._poller is not None:
            self._poller.cancel()
            self._poller.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        if self._models is None:
            self.refreshModels()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified
            )

    def onSceneStartClose(self, caller, event) -> None:
        if self._poller is not None:  # its input nodes are going away: drop the result
            self._discardResult = True
            self._poller.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode: SegmentationParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified
            )
        self._parameterNode = parameterNode
        if self._parameterNode:
            # Widgets with the "SlicerParameterName" property in the .ui are bound here.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(
                self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified
            )
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        model = self._currentModel()
        if (
            self._parameterNode
            and self._models
            and (model is None or model.id != self._parameterNode.modelId)
        ):
            self._selectModelFromParameterNode()
        self._checkCanApply()

    # --- Models -----------------------------------------------------------------------------

    def modelFolders(self) -> list[str]:
        """Model folders the user added (kept in the application settings)."""
        value = qt.QSettings().value(MODEL_FOLDERS_SETTING)
        if not value:
            return []
        return [value] if isinstance(value, str) else [str(folder) for folder in value]

    def refreshModels(self) -> None:
        """List this module's models in the combo box (asks to install missing packages)."""
        if not torchSetup.ensurePipPackages():
            self._models = None
            self._setStatus(
                _(
                    "Models cannot be read without the Python packages {packages}. "
                    "Open the module again to install them."
                ).format(packages=", ".join(PIP_REQUIREMENTS))
            )
            return
        errors = []
        models = self.logic.models(self.modelFolders(), errors)
        for error in errors:
            logging.warning("UNetSeg: skipped invalid model package: %s", error)
        tooMany = [model for model in models if len(model.inputs) > INPUT_SLOTS]
        for model in tooMany:
            logging.warning(
                "UNetSeg: model %s has %d inputs; the panel offers %d",
                model.id,
                len(model.inputs),
                INPUT_SLOTS,
            )
        self._models = [model for model in models if model not in tooMany]
        combo = self.ui.modelComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for model in self._models:
            combo.addItem(f"{model.title} ({model.version})", model.id)
        combo.blockSignals(wasBlocked)
        messages = []
        if self._models:
            self._selectModelFromParameterNode()
        else:
            messages.append(
                _(
                    "No model for this module is installed. Use 'Add model folder...' to add "
                    "one; this module lists models with {rule}."
                ).format(rule=self.logic.modelFilter.describe())
            )
        if errors:
            messages.append(
                _("{count} invalid model package(s) skipped; see the application log.").format(
                    count=len(errors)
                )
            )
        if messages:
            self._setStatus(" ".join(messages))

    def _selectModelFromParameterNode(self) -> None:
        combo = self.ui.modelComboBox
        modelId = self._parameterNode.modelId if self._parameterNode else ""
        index = max(combo.findData(modelId), 0) if modelId else 0
        wasBlocked = combo.blockSignals(True)
        combo.setCurrentIndex(index)
        combo.blockSignals(wasBlocked)
        self.onModelSelected(index)

    def _currentModel(self) -> ModelPackage | None:
        index = self.ui.modelComboBox.currentIndex
        return self._models[index] if self._models and 0 <= index < len(self._models) else None

    def onModelSelected(self, index: int) -> None:
        model = self._currentModel()
        self.ui.modelInfoLabel.text = modelSummaryHtml(model) if model else ""
        if model is None or self._parameterNode is None:
            self._checkCanApply()
            return
        if model.id != self._parameterNode.modelId:  # a different model: its defaults, new inputs
            with slicer.util.NodeModify(self._parameterNode):
                self._parameterNode.modelId = model.id
                self._parameterNode.overlap = min(model.overlap, MAX_OVERLAP)
                for name in SLOT_PARAMETERS:
                    self._parameterNode.setValue(name, None)
        self._configureSlots(model)
        lesions = model.lesion_analysis
        self.ui.lesionsLabel.setVisible(lesions)
        self.ui.lesionsTable.setVisible(lesions)
        if not any(self._inputNodes(model).values()):
            self.onAutoFill()
        self._checkCanApply()

    def _configureSlots(self, model: ModelPackage) -> None:
        """Show one labelled selector per model input; hide and empty the others."""
        slots = zip(self._slotLabels, self._slotSelectors, strict=True)
        for slot, (label, selector) in enumerate(slots):
            visible = slot < len(model.inputs)
            label.setVisible(visible)
            selector.setVisible(visible)
            if not visible:
                self._parameterNode.setValue(SLOT_PARAMETERS[slot], None)
                continue
            spec = model.inputs[slot]
            title = (
                spec.title if spec.required else _("{title} (optional)").format(title=spec.title)
            )
            label.text = f"{title}:"
            tip = _("Volume for the model input '{name}'.").format(name=spec.name)
            patterns = ", ".join((*spec.name_patterns, *spec.series_description_patterns))
            if patterns:
                tip += " " + _("Auto-fill looks for names like {patterns}.").format(
                    patterns=patterns
                )
            if model.spatial_dims == 2:
                tip += " " + _("2D model: select a single-slice image (e.g. a radiograph).")
            selector.toolTip = tip

    def onAddModelFolder(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(), _("Folder with model packages")
        )
        if not folder:
            return
        folders = self.modelFolders()
        if folder not in folders:
            qt.QSettings().setValue(MODEL_FOLDERS_SETTING, [*folders, folder])
        before = {model.id for model in self._models or []}
        self.refreshModels()
        added = [model for model in self._models or [] if model.id not in before]
        if added:
            self.ui.modelComboBox.setCurrentIndex(self._models.index(added[0]))
            self._setStatus(_("Added: {models}.").format(models=", ".join(m.title for m in added)))
        elif self._models is not None:
            self._setStatus(
                _(
                    "No new model for this module in {folder}. This module lists models with "
                    "{rule}; models for other tasks appear in their modules."
                ).format(folder=folder, rule=self.logic.modelFilter.describe())
            )

    # --- Inputs -----------------------------------------------------------------------------

    def _inputNodes(self, model: ModelPackage) -> dict[str, Any]:
        """Model input name -> selected volume node (None when empty)."""
        return {
            spec.name: self._parameterNode.getValue(SLOT_PARAMETERS[slot])
            for slot, spec in enumerate(model.inputs)
        }

    def _setInputNodes(self, model: ModelPackage, nodes: dict[str, Any]) -> None:
        with slicer.util.NodeModify(self._parameterNode):
            for slot, spec in enumerate(model.inputs):
                self._parameterNode.setValue(SLOT_PARAMETERS[slot], nodes.get(spec.name))

    @staticmethod
    def _seriesDescription(volumeNode) -> str | None:
        """SeriesDescription of a volume: UNetSeg's attribute, else from the DICOM database for
        volumes loaded by Slicer's DICOM module; None if unknown."""
        description = volumeNode.GetAttribute(SERIES_DESCRIPTION_ATTRIBUTE)
        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = slicer.dicomDatabase
        if description or not uids or database is None or not database.isOpen:
            return description
        fileName = database.fileForInstance(uids[0])
        return database.fileValue(fileName, "0008,103E") if fileName else None

    def onAutoFill(self) -> None:
        model = self._currentModel()
        if model is None or self._parameterNode is None:
            return
        volumes = [
            node
            for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
            if not any(node.IsA(nonImage) for nonImage in NON_IMAGE_VOLUMES)
        ]
        if not volumes:
            self._setStatus(_("Load images first (Add Data, or 'Load from DICOM database...')."))
            return
        candidates = [describeVolume(node, self._seriesDescription(node)) for node in volumes]
        match = match_inputs(candidates, model.inputs, raise_on_missing=False)
        self._setInputNodes(model, match.assigned)
        self._setStatus(self._matchMessage(model, match))

    def _matchMessage(self, model: ModelPackage, match: MatchResult) -> str:
        titles = {spec.name: spec.title for spec in model.inputs}
        messages = []
        if match.missing_required:
            missing = ", ".join(titles[name] for name in match.missing_required)
            messages.append(
                _("No volume found for {inputs}: select it by hand.").format(inputs=missing)
            )
        for name, others in match.ambiguous.items():
            names = ", ".join(node.GetName() for node in [match.assigned[name], *others])
            messages.append(
                _("Several volumes fit {input} equally well ({volumes}): check the choice.").format(
                    input=titles[name], volumes=names
                )
            )
        return " ".join(messages) or _("Inputs filled in automatically.")

    def onLoadFromDicom(self) -> None:
        model = self._currentModel()
        if model is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Loading from the DICOM database failed.")):
            nodes = dicomBrowser.pickStudyAndLoad(model, slicer.util.mainWindow())
            if nodes:
                self._setInputNodes(model, nodes)
                reference = next(iter(nodes.values()))
                slicer.util.setSliceViewerLayers(background=reference, fit=True)

    # --- Running ----------------------------------------------------------------------------

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._poller is not None:  # the button is "Cancel" while a job runs
            return
        model = self._currentModel()
        button = self.ui.segmentButton
        if self._parameterNode is None or model is None:
            button.enabled = False
            button.toolTip = _("Choose a model.")
            return
        nodes = self._inputNodes(model)
        missing = [s.title for s in model.inputs if s.required and nodes[s.name] is None]
        button.enabled = not missing
        button.toolTip = (
            _("Select: {inputs}.").format(inputs=", ".join(missing))
            if missing
            else _("Segment the inputs with {model}.").format(model=model.title)
        )

    def _setStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
