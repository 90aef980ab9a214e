"""Widgets of the UNetSeg drawer panel and of the results card (layout only, no logic).

Every state name starts with ``us_``; ``app.WebApp`` owns the state and the actions. Elements
the browser tests use carry a stable ``id``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from trame.widgets import html
from trame.widgets import vuetify3 as v3

from unetseg.engine.options import BACKENDS, DEVICES
from unetseg.web.uploads import UPLOAD_SUFFIXES

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

#: The file picker's filter: the suffixes an upload may hold, and ``.gz`` for ``.nii.gz``.
_UPLOAD_ACCEPT = ",".join((*UPLOAD_SUFFIXES, ".gz"))

#: Attributes of the panel's form fields: dense, no room kept for hints under them.
_COMPACT = {"density": "compact", "hide_details": True}


def _section(title: str) -> None:
    html.Div(title, classes="text-subtitle-2 mt-3 mb-1")


def _field(widget: Callable, label: str, model: str, **attributes: Any) -> None:
    """A compact form field (``v3.VSelect``, ``v3.VTextField``, ...) bound to the state
    variable ``model``."""
    widget(label=label, v_model=(model,), **_COMPACT, **attributes)


def _load_row(
    label: str, items: str, model: str, load: Callable, ids: tuple[str, str], **row: Any
) -> None:
    """A drop-down and its Load button (``ids``: theirs) on one row (``row``: its attributes)."""
    with html.Div(**row):
        _field(v3.VSelect, label, model, items=(items,), id=ids[0])
        v3.VBtn("Load", click=load, classes="ml-2", id=ids[1])


@contextmanager
def _table(columns: Sequence[str], rows: str, **attributes: Any) -> Iterator[None]:
    """A compact table headed by ``columns``, one row per item of ``rows`` (``row in ...``,
    keyed by ``row.id``); the block builds the cells of a row."""
    with v3.VTable(density="compact", **attributes):
        with html.Thead(), html.Tr():
            for column in columns:
                html.Th(column)
        with html.Tbody(), html.Tr(v_for=f"row in {rows}", key="row.id"):
            yield


def _result_button(text: str, click: Callable | str, **attributes: Any) -> None:
    v3.VBtn(text, click=click, size="small", classes="ma-1", **attributes)


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
        _load_row(
            "Bundled sample",
            "us_samples",
            "us_sample",
            load_sample,
            ("us-sample", "us-load-sample"),
            classes="d-flex align-center",
        )
        _load_row(
            "Server folder (--data)",
            "us_data_folders",
            "us_data_folder",
            load_data_folder,
            ("us-data-folder", "us-load-data"),
            classes="d-flex align-center mt-2",
            v_if=("us_data_folders.length",),
        )
        with html.Div(classes="mt-2"):
            html.Input(
                type="file",
                multiple=True,
                accept=_UPLOAD_ACCEPT,
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
        with _table(("Volume", "Series"), "us_series", v_if=("us_series.length",), id="us-series"):
            html.Td("{{ row.name }}")
            html.Td("{{ row.description }}", classes="text-caption")

        _section("2. Task and model")
        _field(v3.VSelect, "Task", "us_task", items=("us_tasks",), id="us-task")
        _field(v3.VSelect, "Model", "us_model", items=("us_models",), classes="mt-2", id="us-model")
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
            classes="mt-2",
            **_COMPACT,
        )
        with html.Div(classes="d-flex align-center mt-2"):
            devices = (_js_list(DEVICES),)
            _field(v3.VSelect, "Device", "us_device", items=devices, style="max-width: 110px")
            overlap = "Overlap (empty: model's)"
            _field(v3.VTextField, overlap, "us_overlap", classes="ml-2", id="us-overlap")
            _field(v3.VCheckbox, "Fast", "us_fast")
        with html.Div(classes="d-flex align-center mt-2"):
            backends = (_js_list(BACKENDS),)
            _field(v3.VSelect, "Backend", "us_backend", items=backends, style="max-width: 140px")
            uncertainty = "Uncertainty (slower)"
            _field(v3.VCheckbox, uncertainty, "us_uncertainty", classes="ml-2", id="us-uncertainty")

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
        with _table(("Segment", "Voxels", "Size"), "us_segments", id="us-volumes"):
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
            with _table(
                ("#", "mL", "diameter mm"), "us_lesions.slice(0, 20)", v_if=("us_lesions.length",)
            ):
                html.Td("{{ row.id }}")
                html.Td("{{ row.volume_ml }}")
                html.Td("{{ row.diameter_mm }}")
        no_dicom = ("!us_dicom_ok",)
        with html.Div(classes="d-flex flex-wrap mt-2"):
            _result_button("Save .seg.nrrd", save_seg_nrrd, id="us-save-nrrd")
            _result_button(
                "Download .seg.nrrd",
                f"utils.download(us_file_stem + '.seg.nrrd', "
                f"trigger('{download_seg_nrrd}'), 'application/octet-stream')",
                id="us-download-nrrd",
            )
            _result_button("Save DICOM SEG", save_dicom_seg, disabled=no_dicom, id="us-save-dicom")
            _result_button(
                "Download DICOM SEG",
                f"utils.download(us_file_stem + '.dcm', "
                f"trigger('{download_dicom_seg}'), 'application/dicom')",
                disabled=no_dicom,
                id="us-download-dicom",
            )


def _js_list(values: Sequence[str]) -> str:
    """A JavaScript list of strings in single quotes: it sits inside a double-quoted HTML
    attribute of the page template."""
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"
