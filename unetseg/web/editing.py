"""The segmentation being corrected: opening it in trame-slicer's segment editor, and keeping
the results table (``us_segments``, ``us_lesions``) in step with every edit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from unetseg.engine.package import ModelPackage
from unetseg.web import results, saving

logger = logging.getLogger(__name__)
#: The table is measured once a burst of edits is over (painting modifies the node often).
TABLE_DELAY_SECONDS = 0.4


@dataclass(frozen=True)
class Current:
    """The edited segmentation node, its reference volume and the model that made it."""

    node: Any
    reference: Any
    model: ModelPackage


class ResultEditor:
    """Holds the one segmentation of the scene that the editor and the table show.

    Args:
        slicer_app: trame-slicer's ``SlicerApp`` (scene, segmentation editor, display).
        state: the trame state.
        message: shows a message to the user (text, kind).
    """

    def __init__(self, slicer_app: Any, state: Any, message: Callable[[str, str], None]):
        self._app = slicer_app
        self.scene = slicer_app.scene
        self.editor = slicer_app.segmentation_editor
        self.state = state
        self._message = message
        self._result: tuple[str, str, ModelPackage] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.editor.segmentation_modified.connect(self.schedule_table)

    def show(self, node: Any, reference: Any, model: ModelPackage, dicom_ok: bool) -> None:
        """Open ``node`` in the segment editor (slice views and 3D) and fill the table."""
        for other in list(self.scene.GetNodesByClass("vtkMRMLSegmentationNode")):
            if other.GetID() != node.GetID():  # one segmentation at a time in the editor
                self.scene.RemoveNode(other)
        self._result = (node.GetID(), reference.GetID(), model)
        self.editor.deactivate_effect()
        self.editor.set_active_segmentation(node, reference)
        self._app.display_manager.show_volume(reference, do_reset_views=False)
        # The 3D view shows the segments' surfaces, not the volume rendering that hides them.
        rendering = self._app.volume_rendering.get_vr_display_node(reference)
        if rendering is not None:
            rendering.SetVisibility(False)
        dims = reference.GetImageData().GetDimensions()
        self.editor.set_surface_representation_enabled(dims[2] > 1)  # no 3D for an X-ray
        self.editor.trigger_all_signals()
        self._cancel_timer()  # measured below, after the changes made here
        self.state.update(
            {
                "us_has_result": True,
                "us_segmentation_name": node.GetName(),
                "us_file_stem": saving.file_stem(node.GetName()),
                "us_lesion_mode": model.lesion_analysis,
                "us_dicom_ok": dicom_ok,
            }
        )
        self.update_table()

    def clear(self) -> None:
        self._cancel_timer()
        self._result = None
        self.state.update({"us_has_result": False, "us_segments": [], "us_lesions": []})

    def current(self) -> Current | None:
        """The edited segmentation, or None (none yet, or its nodes were removed)."""
        if self._result is None:
            return None
        node_id, reference_id, model = self._result
        node = self.scene.GetNodeByID(node_id)
        reference = self.scene.GetNodeByID(reference_id)
        if node is None or reference is None:
            return None
        return Current(node, reference, model)

    def require(self) -> Current:
        current = self.current()
        if current is None:
            raise ValueError("No segmentation yet: segment a volume first")
        return current

    def schedule_table(self, *_: Any) -> None:
        """Re-measure shortly after the last of a burst of edits."""
        if self._result is None:
            return
        self._cancel_timer()
        loop = asyncio.get_event_loop()
        self._timer = loop.call_later(TABLE_DELAY_SECONDS, self._update_now)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _update_now(self) -> None:
        self._timer = None
        with self.state:
            self.update_table()

    def update_table(self) -> None:
        """Measure the edited segmentation into ``us_segments`` / ``us_lesions``."""
        current = self.current()
        if current is None:
            return
        try:
            table = results.segment_table(
                current.node, current.reference, bool(self.state.us_lesion_mode)
            )
        except Exception as error:
            logger.exception("measuring failed")
            self._message(f"Could not measure the segmentation: {error}", "error")
            return
        self.state.update(
            {
                "us_segments": table["segments"],
                "us_lesions": table["lesions"],
                "us_lesion_count": table["lesion_count"],
            }
        )
