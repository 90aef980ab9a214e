"""The UNetSeg web application: trame-slicer's segmentation app plus the UNetSeg panel.

All MRML work happens on the server's event loop thread; only the engine part of a run goes
to the host layer's worker thread. Every action catches its errors and shows them as a
message: a bad upload or a failed run never takes the server down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trame.app.file_upload import ClientFile
from trame.widgets import html
from trame_slicer.app import SegmentationApp
from trame_slicer.app.ui.control_button import ControlButton

from unetseg.web import catalog, panel, saving, sources
from unetseg.web.editing import ResultEditor
from unetseg.web.runner import RunCancelledError, SegmentationRunner, form_options
from unetseg.web.uploads import (
    DEFAULT_MAX_UPLOAD_BYTES,
    UploadedFile,
    UploadError,
    UploadStore,
    too_large_message,
)

logger = logging.getLogger(__name__)
PANEL = "UNetSegPanel"  # the drawer tool id of the panel
EDITOR = "SegmentEditorUI"  # trame-slicer's segment editor tool id
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class WebConfig:
    """Server options (``python -m unetseg.web``)."""

    output: Path
    data: Path | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES


class WebApp(SegmentationApp):
    """trame-slicer's ``SegmentationApp`` with the UNetSeg panel and results card."""

    def __init__(self, server: Any, config: WebConfig) -> None:
        super().__init__(server)
        self.config = config
        self.scene = self._slicer_app.scene
        self.catalog = catalog.Catalog()
        self.uploads = UploadStore(max_bytes=config.max_upload_bytes)
        self.outputs = saving.OutputFolder(config.output)
        self.runner = SegmentationRunner(self.scene)
        self.loaded: dict[str, sources.LoadedSeries] = {}
        self._received: list[UploadedFile] = []  # the files of the upload so far
        self._received_bytes = 0
        self._pending: tuple[Any, str] | None = None  # model and reference of the run
        self._init_state()
        self.result = ResultEditor(self._slicer_app, self.state, self._message)
        self._build_ui()
        self.server.controller.on_server_exited.add(lambda **_: self.uploads.cleanup())

    # -- state and layout --------------------------------------------------------------------

    def _init_state(self) -> None:
        s = self.state
        s.trame__title = "UNetSeg"
        s.update(
            {
                "us_message": "",
                "us_message_type": "info",
                "us_samples": sources.sample_items(),
                "us_sample": None,
                "us_data_folders": sources.data_folders(self.config.data),
                "us_data_folder": None,
                "us_max_upload_bytes": self.config.max_upload_bytes,
                "us_upload_busy": False,
                "us_series": [],
                "us_volume_items": [],
                "us_tasks": self.catalog.task_items(),
                "us_task": None,
                "us_models": [],
                "us_model": None,
                "us_card": "",
                "us_inputs": [],
                "us_choice": {},
                "us_device": "auto",
                "us_backend": "auto",
                "us_overlap": "",
                "us_fast": False,
                "us_uncertainty": False,
                "us_low_confidence": [],
                "us_running": False,
                "us_progress": 0,
                "us_progress_text": "",
                "us_has_result": False,
                "us_segmentation_name": "",
                "us_file_stem": "segmentation",
                "us_segments": [],
                "us_lesions": [],
                "us_lesion_count": 0,
                "us_lesion_mode": False,
                "us_dicom_ok": False,
                "us_scene": {},
            }
        )
        self._logic.data.active_tool = PANEL
        self._logic.data.is_drawer_visible = True
        s.change("us_task")(self._on_task)
        s.change("us_model")(self._on_model)

    def _build_ui(self) -> None:
        ctrl = self.server.controller
        self.ui.title.set_text("UNetSeg")
        # Loading goes through the panel (limits, series list): hide trame-slicer's own buttons.
        stock = (self._ui.load_volume_items_buttons, self._ui.download_scene_button)
        for element in self.ui.appbar.children:
            children = getattr(element, "children", None)
            if isinstance(children, list):
                children[:] = [child for child in children if child not in stock]
        with self.ui.toolbar:
            ControlButton(
                name="UNetSeg panel",
                icon="mdi-brain",
                click=f"{self._logic.name.active_tool} = '{PANEL}'; "
                f"{self._logic.name.is_drawer_visible} = true",
                classes="mt-1",
                id="us-panel-button",
            )
        drawer = self.ui.drawer
        tools = list(drawer.children)  # trame-slicer's segment editor and volume properties
        with drawer:
            panel.build_message()
            panel.build_results(
                save_seg_nrrd=self._guarded(self.save_seg_nrrd),
                save_dicom_seg=self._guarded(self.save_dicom_seg),
                download_seg_nrrd=ctrl.trigger_name(self._download_seg_nrrd),
                download_dicom_seg=ctrl.trigger_name(self._download_dicom_seg),
            )
            with html.Div(v_if=(f"{self._logic.name.active_tool} === '{PANEL}'",)):
                panel.build_panel(
                    upload_chunk=ctrl.trigger_name(self._upload_chunk),
                    upload_too_large=ctrl.trigger_name(self._upload_too_large),
                    load_sample=self._guarded(self.load_sample),
                    load_data_folder=self._guarded(self.load_data_folder),
                    segment=self._guarded(self.segment),
                    cancel=self.cancel,
                )
        # Message and results on top, whichever tool is open below them.
        added = [child for child in drawer.children if child not in tools]
        drawer.children[:] = added[:2] + tools + added[2:]
        self.ui.flush_content()

    def _message(self, text: str, kind: str = "info") -> None:
        self.state.us_message = text
        self.state.us_message_type = kind

    def _guarded(self, action: Callable[[], Any]) -> Callable[[], Any]:
        """``action`` with every error shown as a message (the server keeps running)."""

        def run() -> Any:
            try:
                return action()
            except Exception as error:
                logger.exception("%s failed", action.__name__)
                self._message(str(error) or type(error).__name__, "error")
                return None

        return run

    # -- loading ---------------------------------------------------------------------------

    def load_sample(self) -> None:
        if not self.state.us_sample:
            raise ValueError("Choose a sample first")
        paths, model_id = sources.sample_paths(self.state.us_sample)
        self._load(paths, f"sample '{self.state.us_sample}'")
        task = self.catalog.task_of(model_id)
        if task:
            self.state.us_task = task
            self._on_task(task)
            self.state.us_model = model_id
            self._on_model(model_id)

    def load_data_folder(self) -> None:
        folder = sources.resolve_data_folder(self.config.data, self.state.us_data_folder or ".")
        self._load([folder], f"server folder '{self.state.us_data_folder or '.'}'")

    def _upload_too_large(self, total: int) -> None:
        self._message(too_large_message(total, self.config.max_upload_bytes), "error")

    def _upload_chunk(self, files: list[dict]) -> None:
        """Chunks of the browser's chunk loader; an empty list ends the upload.

        Bytes beyond the size limit are dropped as they arrive (a browser that skips the
        page's own check cannot fill the server's memory with one upload)."""
        if files:
            if self._received_bytes <= self.config.max_upload_bytes:
                chunk = [UploadedFile(c.name, c.content or b"") for c in map(ClientFile, files)]
                self._received += chunk
                self._received_bytes += sum(len(item.content) for item in chunk)
            return
        received, self._received = self._received, []
        total, self._received_bytes = self._received_bytes, 0
        try:
            self.uploads.check_sizes([total])
            folder = self.uploads.store(received)
            self._load([folder], "upload")
        except (UploadError, FileNotFoundError) as error:
            self._message(str(error), "error")
        except Exception as error:
            logger.exception("upload failed")
            self._message(f"Upload failed: {error}", "error")

    def _load(self, paths: list[Path], what: str) -> None:
        """Clear the scene, load every series found in ``paths`` and show the largest."""
        if self.runner.busy:
            raise RuntimeError("Wait for the running segmentation (or cancel it) first")
        found = sources.find(paths)
        self.result.clear()
        self.scene.Clear()
        loaded, errors = sources.load(self.scene, found)
        self.loaded = {item.node_id: item for item in loaded}
        self.state.us_series = [
            {"id": s.node_id, "name": s.name, "description": s.description} for s in loaded
        ]
        self.state.us_volume_items = [{"value": s.node_id, "title": s.name} for s in loaded]
        self.uploads.prune(keep=[p for p in paths if p.parent == self.uploads.root])
        if not loaded:
            self._logic.data.is_volume_loaded = False
            self.state.us_choice = {}
            self._publish_scene()
            raise ValueError("Nothing could be loaded: " + "; ".join(errors))
        largest = max(loaded, key=lambda s: _voxels(self.scene.GetNodeByID(s.node_id)))
        node = self.scene.GetNodeByID(largest.node_id)
        self._set_layout("Axial Only" if _voxels(node, axis=0) == 1 else "Axial Primary")
        self._slicer_app.display_manager.show_volume(node, do_reset_views=True)
        self._logic._volume_properties_logic.on_volume_changed(node)
        self._logic.data.is_volume_loaded = True
        self._rematch()
        self._publish_scene()
        text = f"Loaded {len(loaded)} volume(s) from {what}"
        self._message(text + ("; failed: " + "; ".join(errors) if errors else ""), "success")

    def _publish_scene(self) -> None:
        """``us_scene``: the names of the scene's volumes and segmentations (what the user
        has; the browser tests read it to check that a cancelled run changed nothing)."""
        self.state.us_scene = {
            kind: sorted(n.GetName() for n in self.scene.GetNodesByClass(f"vtkMRML{kind}Node"))
            for kind in ("ScalarVolume", "Segmentation")
        }

    def _set_layout(self, layout_id: str) -> None:
        """One slice view for a single-slice image, else axial, 3D, coronal and sagittal."""
        buttons = self._logic._layout_button_logic
        buttons.data.current_layout_id = layout_id
        buttons.layout_manager.set_layout(layout_id)

    # -- task, model, inputs -----------------------------------------------------------------

    def _on_task(self, us_task: str | None = None, **_: Any) -> None:
        self.state.us_models = self.catalog.model_items(us_task or "")
        ids = [item["value"] for item in self.state.us_models]
        if self.state.us_model not in ids:
            self.state.us_model = ids[0] if ids else None
            self._on_model(self.state.us_model)

    def _on_model(self, us_model: str | None = None, **_: Any) -> None:
        if not us_model:
            self.state.update({"us_card": "", "us_inputs": [], "us_choice": {}})
            return
        package = self.catalog.get(us_model)
        self.state.us_card = self.catalog.card_html(package)
        self.state.us_inputs = catalog.input_rows(package)
        self._rematch()

    def _rematch(self) -> None:
        if not self.state.us_model:
            return
        package = self.catalog.get(self.state.us_model)
        nodes = [self.scene.GetNodeByID(node_id) for node_id in self.loaded]
        self.state.us_choice = catalog.auto_match(package, [n for n in nodes if n is not None])

    # -- running -----------------------------------------------------------------------------

    def segment(self) -> None:
        if not self.state.us_model:
            raise ValueError("Choose a model first")
        package = self.catalog.get(self.state.us_model)
        nodes = catalog.chosen_nodes(package, self.state.us_choice or {}, self.scene)
        self.runner.start(package, nodes, form_options(self.state))
        reference = next(nodes[spec.name] for spec in package.inputs if spec.name in nodes)
        self._pending = (package, reference.GetID())
        self.state.update({"us_running": True, "us_progress": 0, "us_progress_text": "Starting"})
        self._message(f"Segmenting with {package.title}...", "info")
        asyncio.get_event_loop().create_task(self._watch())

    def cancel(self) -> None:
        self.runner.cancel()
        self.state.us_progress_text = "Cancelling..."

    async def _watch(self) -> None:
        """Follow the run from the event loop; finish it on this thread."""
        while not self.runner.done():
            progress = self.runner.poll()
            with self.state:
                self.state.us_progress = progress.percent
                self.state.us_progress_text = (
                    f"{progress.done} / {progress.total} windows, {progress.seconds:.0f} s"
                )
            await asyncio.sleep(POLL_SECONDS)
        with self.state:
            self.state.us_running = False
            assert self._pending is not None
            package, reference_id = self._pending
            try:
                result = self.runner.finish()
            except RunCancelledError as error:
                self._message(str(error), "warning")
                self._publish_scene()
                return
            except Exception as error:
                logger.exception("segmentation failed")
                self._message(f"Segmentation failed: {error}", "error")
                return
            reference = self.scene.GetNodeByID(reference_id)
            series = self.loaded.get(reference_id)
            dicom_ok = bool(series and series.source.series is not None)
            self.result.show(result.segmentationNode, reference, package, dicom_ok)
            # trame-slicer clears the undo stack of a new segmentation without telling its
            # buttons: refresh them (else Redo stays enabled after an undo of the previous one).
            self._logic._segment_editor_logic._on_undo_changed()
            self._logic.data.active_tool = EDITOR
            self._logic.data.is_drawer_visible = True
            self._publish_scene()
            seconds = result.timings.get("total", 0.0)
            unsure = [
                row["id"]
                for row in result.statistics.get("lesions", [])
                if row.get("low_confidence")
            ]
            self.state.us_low_confidence = unsure
            text = f"Done in {seconds:.1f} s on {result.device} ({result.backend})"
            if unsure:
                text += f"; low confidence: lesion {', '.join(map(str, unsure))}"
            self._message(text, "success")

    # -- saving ------------------------------------------------------------------------------

    def _dicom_bytes(self) -> tuple[Any, bytes]:
        current = self.result.require()
        series = self.loaded.get(current.reference.GetID())
        data = saving.dicom_seg_bytes(
            current.node,
            current.reference,
            series.source.series if series else None,
            current.model.labels,
            current.model.id,
        )
        return current.node, data

    def save_seg_nrrd(self) -> None:
        path = self.outputs.save_seg_nrrd(self.result.require().node)
        self._message(f"Saved {path}", "success")

    def save_dicom_seg(self) -> None:
        node, data = self._dicom_bytes()
        path = self.outputs.save_dicom_seg(node, data)
        self._message(f"Saved {path}", "success")

    def _attachment(self, make: Callable[[], bytes]) -> Any:
        try:
            return self.server.protocol.addAttachment(make())
        except Exception as error:
            logger.exception("download failed")
            self._message(f"Download failed: {error}", "error")
            return None

    def _download_seg_nrrd(self) -> Any:
        return self._attachment(lambda: saving.seg_nrrd_bytes(self.result.require().node))

    def _download_dicom_seg(self) -> Any:
        return self._attachment(lambda: self._dicom_bytes()[1])


def _voxels(node: Any, axis: int | None = None) -> int:
    """Voxel count of a volume node (or its size along array ``axis``: 0 is K)."""
    if node is None or node.GetImageData() is None:
        return 0
    dims = node.GetImageData().GetDimensions()  # (I, J, K)
    if axis is not None:
        return int(dims[2 - axis])
    return int(dims[0]) * int(dims[1]) * int(dims[2])
