"""Widgets of the UNetSeg drawer panel and of the results card (layout only, no logic).

Every state name starts with ``us_``; ``app.WebApp`` owns the state and the actions. Elements
the browser tests use carry a stable ``id``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from trame.widgets import html
from trame.widgets import vuetify3 as v3

from unetseg.engine.options import BACKENDS, DEVICES

#: JavaScript run when files are chosen: refuse too large uploads before sending any byte,
#: else send them in chunks to the server (trame-slicer's chunk loader).
_UPLOAD_JS = """
const files = $event.target.files;
let total = 0;
for (const f of files) { total += f.size; }
if (total > us_max_upload_bytes) {
  trigger('{too_large}', [total]);
} else if (files.length) {
  us_upload_busy = true;
  window.load_files_by_chunks(files, { trigger_name: '{chunk}' })
    .finally(() => { us_upload_busy = false; $event.target.value = ''; });
}
"""


def _section(title: str) -> None:
    html.Div(title, classes="text-subtitle-2 mt-3 mb-1")


def build_message() -> None:
    """The message line (errors, progress of actions) on top of the drawer."""
    v3.VAlert(
        v_if=("us_message",),
        text=("us_message",),
        type=("us_message_type",),
        density="compact",
        closable=True,
        click_close="us_message = ''",
        id="us-message",
        classes="ma-2",
    )


def build_panel(
    *,
    upload_chunk: str,
    upload_too_large: str,
    load_sample: Callable,
    load_data_folder: Callable,
    segment: Callable,
    cancel: Callable,
) -> None:
    """The drawer panel: load, series list, task/model/card, inputs, options, run."""
    with v3.VCard(flat=True, classes="pa-2", id="us-panel"):
        v3.VCardTitle("UNetSeg", classes="px-1")
        _section("1. Load volumes")
        with html.Div(classes="d-flex align-center"):
            v3.VSelect(
                label="Bundled sample",
                items=("us_samples",),
                v_model=("us_sample",),
                density="compact",
                hide_details=True,
                id="us-sample",
            )
            v3.VBtn("Load", click=load_sample, classes="ml-2", id="us-load-sample")
        with html.Div(classes="d-flex align-center mt-2", v_if=("us_data_folders.length",)):
            v3.VSelect(
                label="Server folder (--data)",
                items=("us_data_folders",),
                v_model=("us_data_folder",),
                density="compact",
                hide_details=True,
                id="us-data-folder",
            )
            v3.VBtn("Load", click=load_data_folder, classes="ml-2", id="us-load-data")
        with html.Div(classes="mt-2"):
            html.Input(
                type="file",
                multiple=True,
                accept=".nii,.nii.gz,.gz,.nrrd,.mha,.dcm,.png,.jpg,.jpeg,.zip",
                change=_UPLOAD_JS.replace("{chunk}", upload_chunk).replace(
                    "{too_large}", upload_too_large
                ),
                disabled=("us_upload_busy || us_running",),
                id="us-upload",
            )
            html.Div(
                "Upload NIfTI, NRRD, MHA, an image, or a .zip of DICOM files "
                "(at most {{ Math.round(us_max_upload_bytes / 1e6) }} MB)",
                classes="text-caption",
            )
            v3.VProgressLinear(v_if=("us_upload_busy",), indeterminate=True)
        with v3.VTable(density="compact", v_if=("us_series.length",), id="us-series"):
            with html.Thead(), html.Tr():
                html.Th("Volume")
                html.Th("Series")
            with html.Tbody(), html.Tr(v_for="row in us_series", key="row.id"):
                html.Td("{{ row.name }}")
                html.Td("{{ row.description }}", classes="text-caption")

        _section("2. Task and model")
        v3.VSelect(
            label="Task",
            items=("us_tasks",),
            v_model=("us_task",),
            density="compact",
            hide_details=True,
            id="us-task",
        )
        v3.VSelect(
            label="Model",
            items=("us_models",),
            v_model=("us_model",),
            density="compact",
            hide_details=True,
            classes="mt-2",
            id="us-model",
        )
        html.Div(v_html=("us_card",), classes="text-caption mt-2", id="us-card")

        _section("3. Inputs (matched by name; change if needed)")
        v3.VSelect(
            v_for="inp in us_inputs",
            key="inp.name",
            id=("'us-input-' + inp.name",),
            label=("inp.title + (inp.required ? '' : ' (optional)')",),
            items=("us_volume_items",),
            model_value=("us_choice[inp.name]",),
            update_modelValue="us_choice = Object.assign({}, us_choice, {[inp.name]: $event})",
            clearable=True,
            density="compact",
            hide_details=True,
            classes="mt-2",
        )
        with html.Div(classes="d-flex align-center mt-2"):
            v3.VSelect(
                label="Device",
                items=(_js_list(DEVICES),),
                v_model=("us_device",),
                density="compact",
                hide_details=True,
                style="max-width: 110px",
            )
            v3.VTextField(
                label="Overlap (empty: model's)",
                v_model=("us_overlap",),
                density="compact",
                hide_details=True,
                classes="ml-2",
                id="us-overlap",
            )
            v3.VCheckbox(label="Fast", v_model=("us_fast",), density="compact", hide_details=True)
        with html.Div(classes="d-flex align-center mt-2"):
            v3.VSelect(
                label="Backend",
                items=(_js_list(BACKENDS),),
                v_model=("us_backend",),
                density="compact",
                hide_details=True,
                style="max-width: 140px",
            )
            v3.VCheckbox(
                label="Uncertainty (slower)",
                v_model=("us_uncertainty",),
                density="compact",
                hide_details=True,
                classes="ml-2",
                id="us-uncertainty",
            )

        _section("4. Segment")
        with html.Div(classes="d-flex align-center"):
            v3.VBtn(
                "Segment",
                color="primary",
                click=segment,
                disabled=("us_running || !us_series.length || !us_model",),
                id="us-segment",
            )
            v3.VBtn("Cancel", click=cancel, v_if=("us_running",), classes="ml-2", id="us-cancel")
        v3.VProgressLinear(
            v_if=("us_running",),
            model_value=("us_progress",),
            height=18,
            color="primary",
            classes="mt-2",
            id="us-progress",
        )
        html.Div("{{ us_progress_text }}", v_if=("us_running",), classes="text-caption")


def build_results(
    *,
    save_seg_nrrd: Callable,
    save_dicom_seg: Callable,
    download_seg_nrrd: str,
    download_dicom_seg: str,
) -> None:
    """The results card under the drawer's tool: volumes table, lesions, save and download."""
    with v3.VCard(flat=True, classes="pa-2", v_if=("us_has_result",), id="us-results"):
        v3.VCardSubtitle("{{ us_segmentation_name }}", classes="px-1")
        with v3.VTable(density="compact", id="us-volumes"):
            with html.Thead(), html.Tr():
                html.Th("Segment")
                html.Th("Voxels")
                html.Th("Size")
            with html.Tbody(), html.Tr(v_for="row in us_segments", key="row.id"):
                with html.Td():
                    html.Span(
                        style=(
                            "{background: row.color, display: 'inline-block', width: '10px', "
                            "height: '10px', marginRight: '4px'}",
                        )
                    )
                    html.Span("{{ row.name }}")
                html.Td("{{ row.voxels }}")
                html.Td("{{ row.size }}")
        with html.Div(v_if=("us_lesion_mode",), classes="text-caption mt-1", id="us-lesions"):
            html.Div("{{ us_lesion_count }} lesion(s)")
            with v3.VTable(density="compact", v_if=("us_lesions.length",)):
                with html.Thead(), html.Tr():
                    html.Th("#")
                    html.Th("mL")
                    html.Th("diameter mm")
                with html.Tbody(), html.Tr(v_for="row in us_lesions.slice(0, 20)", key="row.id"):
                    html.Td("{{ row.id }}")
                    html.Td("{{ row.volume_ml }}")
                    html.Td("{{ row.diameter_mm }}")
        with html.Div(classes="d-flex flex-wrap mt-2"):
            v3.VBtn(
                "Save .seg.nrrd",
                click=save_seg_nrrd,
                size="small",
                classes="ma-1",
                id="us-save-nrrd",
            )
            v3.VBtn(
                "Download .seg.nrrd",
                click=f"utils.download(us_file_stem + '.seg.nrrd', "
                f"trigger('{download_seg_nrrd}'), 'application/octet-stream')",
                size="small",
                classes="ma-1",
                id="us-download-nrrd",
            )
            v3.VBtn(
                "Save DICOM SEG",
                click=save_dicom_seg,
                size="small",
                classes="ma-1",
                disabled=("!us_dicom_ok",),
                id="us-save-dicom",
            )
            v3.VBtn(
                "Download DICOM SEG",
                click=f"utils.download(us_file_stem + '.dcm', "
                f"trigger('{download_dicom_seg}'), 'application/dicom')",
                size="small",
                classes="ma-1",
                disabled=("!us_dicom_ok",),
                id="us-download-dicom",
            )


def _js_list(values: Sequence[str]) -> str:
    """A JavaScript list of strings in single quotes: it sits inside a double-quoted HTML
    attribute of the page template."""
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"
