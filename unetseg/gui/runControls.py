"""Segment / Cancel, progress and results of the segmentation panel (``moduleWidget``).

A mixin of ``SegmentationModuleWidget``: it uses the widget's ``ui``, ``logic``,
``_parameterNode``, ``_poller``, ``_discardResult``, ``_lesionCentroids``, ``_currentModel``,
``_inputNodes``, ``_checkCanApply`` and ``_setStatus``.
"""

from __future__ import annotations

import logging
import traceback

import slicer
from slicer.i18n import tr as _

from unetseg.gui import resultsView, torchSetup
from unetseg.gui.jobPoller import JobPoller
from unetseg.gui.parameters import segmentOptions

#: Opacity of the uncertainty volume drawn over the image after a run with uncertainty.
UNCERTAINTY_OPACITY = 0.5


class RunControlsMixin:
    """Starts, cancels and polls the segmentation job and shows its result."""

    def onSegmentButton(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self.ui.segmentButton.enabled = False
            self._setStatus(_("Cancelling..."))
            return
        parameters = self._parameterNode
        if not (torchSetup.ensurePipPackages() and torchSetup.ensureTorch()):
            return
        if not torchSetup.offerOpenVino(parameters.backend, parameters.device):
            return
        model = self._currentModel()
        with slicer.util.tryWithErrorDisplay(_("Segmentation could not start."), waitCursor=True):
            job = self.logic.start(
                model,
                self._inputNodes(model),
                segmentOptions(parameters),
                outputSegmentationNode=parameters.outputSegmentation,
                replaceModelSegments=parameters.replaceExisting,
            )
        self._discardResult = False
        self._poller = JobPoller(job, self._onProgress, self._onJobDone)
        self._setRunning(True)
        self._setStatus(_("Segmenting with {model}...").format(model=model.title))

    def _setRunning(self, running: bool) -> None:
        for widget in (
            self.ui.modelCollapsibleButton,
            self.ui.inputsCollapsibleButton,
            self.ui.outputCollapsibleButton,
            self.ui.advancedCollapsibleButton,
        ):
            widget.enabled = not running
        self.ui.segmentButton.text = _("Cancel") if running else _("Segment")
        self.ui.segmentButton.enabled = True
        self.ui.progressBar.setRange(0, 0)  # busy until the engine reports its windows
        self.ui.progressBar.setVisible(running)
        if not running:
            self._checkCanApply()

    def _onProgress(self, done: int, total: int) -> None:
        if total > 0:
            self.ui.progressBar.setRange(0, total)
            self.ui.progressBar.setValue(done)

    def _onJobDone(self, job) -> None:
        from unetseg.engine.inference import InferenceCancelled

        self._poller = None
        self._setRunning(False)
        if self._discardResult:
            return
        try:
            with slicer.util.WaitCursor():
                result = job.finish()
        except InferenceCancelled:
            self._setStatus(_("Cancelled."))
            return
        except Exception as error:
            logging.error("UNetSeg segmentation failed:\n%s", traceback.format_exc())
            self._setStatus(_("Failed: {error}").format(error=error))
            slicer.util.errorDisplay(
                _("Segmentation failed.") + f"\n\n{error}", detailedText=traceback.format_exc()
            )
            return
        self._showResult(result)

    def _showResult(self, result) -> None:
        if result.uncertaintyNode is not None:
            slicer.util.setSliceViewerLayers(
                foreground=result.uncertaintyNode, foregroundOpacity=UNCERTAINTY_OPACITY
            )
        resultsView.showSegments(self.ui.segmentsTable, result.statistics)
        self._lesionCentroids = resultsView.showLesions(self.ui.lesionsTable, result.statistics)
        self.ui.resultsCollapsibleButton.collapsed = False
        logging.info("UNetSeg timings (s): %s", {k: round(v, 2) for k, v in result.timings.items()})
        status = _("Done in {seconds:.1f} s on {device} ({backend}).").format(
            seconds=result.timings.get("total", 0.0), device=result.device, backend=result.backend
        )
        if result.missingInputs:
            model = self._currentModel()  # the panel is disabled while a job runs
            titles = {spec.name: spec.title for spec in model.inputs} if model else {}
            missing = ", ".join(titles.get(n, n) for n in result.missingInputs)
            status += " " + _(
                "Run without the optional input(s) {inputs}: the result may be less accurate."
            ).format(inputs=missing)
            effect = model.missing_input_effect(result.missingInputs) if model else None
            if effect:
                change = ", ".join(f"{k} {v:+.3f}" for k, v in effect["dice_change"].items())
                status += " " + _(
                    "Measured on {cases} case(s) of {data}: Dice change {change}."
                ).format(cases=effect["cases"], data=effect["data"], change=change)
        self._setStatus(status)

    def onLesionDoubleClicked(self, row: int, column: int) -> None:
        if 0 <= row < len(self._lesionCentroids):
            r, a, s = self._lesionCentroids[row]
            slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)
