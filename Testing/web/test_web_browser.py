"""The web face in a real browser: Playwright drives Debian's chromium against
``python -m unetseg.web`` on 127.0.0.1 (software rendering through OSMesa).

Runs in the web environment (``make test-web``, ``.venv-web``); in the main environment, where
trame-slicer is not installed, the whole module is skipped. Nothing is faked: the bundled
models segment the bundled samples. The cancel test makes a real run slow by asking for a
window overlap of 0.9 on the chest CT (many more windows), so that Cancel lands midway.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "trame_slicer", reason="the web face needs the 'web' extra: `make web` (.venv-web)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (`make web`)")

from Testing.web.webserver import CHROMIUM, CHROMIUM_FLAGS, Page, start_server  # noqa: E402
from unetseg.sampledata import copy_sample, get_sample  # noqa: E402

#: Where the screenshots of the main states are copied (``make web-screenshots``).
SCREENSHOT_DIR = os.environ.get("UNETSEG_WEB_SCREENSHOTS")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not CHROMIUM.exists():
        message = f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("UNETSEG_WEB_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("web")
    copy_sample("chest-xray", root / "data")  # the --data folder offers data/chest-xray
    running = start_server(root)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser(server):
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def app(server, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = Page(context.new_page())
    try:
        page.open(server.url)
        yield page
    finally:
        context.close()
    assert server.process.poll() is None, f"the server died:\n{server.log_tail()}"


def _view(app: Page):
    """The first slice view (the rendered image streamed from the server)."""
    view = app.page.locator("img.image-display-area").first
    view.wait_for(state="visible")
    return view


def _screenshot(app: Page, tmp_path: Path, name: str, settle_s: float = 1.5) -> np.ndarray:
    from PIL import Image

    # The drawer keeps the scroll of the panel used before: show its top (message, table).
    app.page.evaluate(
        "document.querySelectorAll('.v-navigation-drawer__content')"
        ".forEach((element) => { element.scrollTop = 0; })"
    )
    app.page.wait_for_timeout(settle_s * 1000)  # the last rendered frame reaches the browser
    path = tmp_path / f"web-{name}.png"
    app.page.screenshot(path=str(path))
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOT_DIR) / path.name).write_bytes(path.read_bytes())
    box = _view(app).bounding_box()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    top, left = int(box["y"]), int(box["x"])
    return pixels[top : top + int(box["height"]), left : left + int(box["width"])]


def _voxels(app: Page) -> dict[str, int]:
    return {row["name"]: row["voxels"] for row in app.get("us_segments")}


def _save(app: Page, server, button: str) -> Path:
    """Click the save ``button`` (a selector); the file its success message names, which must be
    in the server's output folder."""
    app.clear_message()
    app.page.click(button)
    app.wait("S('us_message') !== ''")
    text, kind = app.message()
    assert kind == "success", text
    saved = Path(text.removeprefix("Saved ").strip())
    assert saved.parent == server.output.resolve(), text
    return saved


def test_segment_sample_shows_model_segments(app, tmp_path):
    app.load_sample("chest X-ray")
    assert app.get("us_model") == "lung-cxr"
    assert app.get("us_choice") == {"image": app.get("us_series")[0]["id"]}
    assert "Lungs on chest X-ray" in app.get("us_card")
    loaded = _screenshot(app, tmp_path, "loaded")
    assert loaded.std() > 20, "the slice view is blank after loading"

    app.segment()
    editor = app.get("SegmentEditorState__segment_list__SegmentListState__segments")
    assert [s["name"] for s in editor] == ["right lung", "left lung"]
    assert [s["segment_id"] for s in editor] == ["lung-cxr_right_lung", "lung-cxr_left_lung"]
    sizes = _voxels(app)
    assert sizes.keys() == {"right lung", "left lung"}
    assert all(count > 10000 for count in sizes.values()), sizes

    view = _screenshot(app, tmp_path, "segmented")
    assert view.std() > 20, "the slice view is blank"
    red, green, blue = view[..., 0], view[..., 1], view[..., 2]
    tinted = (green - red > 15) & (green - blue > 15)  # the right lung's green overlay
    assert tinted.sum() > 2000, "no segment overlay visible in the slice view"


def test_paint_stroke_changes_voxel_count(app, tmp_path):
    app.load_sample("chest X-ray")
    app.segment()
    before = _voxels(app)
    # The Paint effect button: the brush followed by the eraser (the other brush icon of the
    # toolbar opens the editor panel).
    paint = app.page.locator(
        "xpath=//button[.//i[contains(@class, 'mdi-brush')]]"
        "[following-sibling::button[1]//i[contains(@class, 'mdi-eraser')]]"
    )
    paint.first.click()
    app.wait("(S('SegmentEditorState__active_effect_name') || '').includes('Paint')", 20)
    box = _view(app).bounding_box()
    x0, y = box["x"] + 0.42 * box["width"], box["y"] + 0.3 * box["height"]
    mouse = app.page.mouse
    mouse.move(x0, y)
    mouse.down()
    mouse.move(x0 + 0.16 * box["width"], y, steps=25)
    mouse.up()
    app.wait(f"S('us_segments')[0].voxels !== {before['right lung']}", 60)
    after = _voxels(app)
    assert after["right lung"] > before["right lung"]
    # Paint overwrites other segments by default: the stroke may take voxels from the left lung.
    assert after["left lung"] <= before["left lung"]
    _screenshot(app, tmp_path, "editing")
    assert app.get("SegmentEditorState__can_undo")
    app.page.locator("button:has(i.mdi-undo)").first.click()
    app.wait(f"S('us_segments')[0].voxels === {before['right lung']}", 60)
    assert _voxels(app) == before


def test_save_and_download_read_back_with_slicerio(app, server, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    app.load_sample("chest X-ray")
    app.segment()
    expected = _voxels(app)

    saved = _save(app, server, "#us-save-nrrd")
    assert saved.name.endswith(".seg.nrrd")

    with app.page.expect_download() as download:
        app.page.click("#us-download-nrrd")
    downloaded = tmp_path / "download.seg.nrrd"
    download.value.save_as(downloaded)

    for path in (saved, downloaded):
        segmentation = slicerio.read_segmentation(str(path))
        names = [segment["name"] for segment in segmentation["segments"]]
        assert names == ["right lung", "left lung"]
        voxels = np.asarray(segmentation["voxels"])
        for segment in segmentation["segments"]:
            count = int((voxels == segment["labelValue"]).sum())
            assert count == expected[segment["name"]]


def test_brain_inputs_can_be_changed_and_lesions_are_listed(app, tmp_path):
    app.load_sample("Glioblastoma MRI")
    names = {row["id"]: row["name"] for row in app.get("us_series")}
    assert sorted(names.values()) == ["FLAIRreg", "T1post", "T1prereg", "T2reg"]
    matched = {key: names[value] for key, value in app.get("us_choice").items()}
    assert matched == {"t1c": "T1post", "flair": "FLAIRreg", "t1": "T1prereg", "t2": "T2reg"}

    app.choose("us-input-t1", "T2reg")  # the same volume for two inputs: refused
    app.wait("S('us_choice').t1 === S('us_choice').t2")
    app.clear_message()
    app.page.click("#us-segment")
    app.wait("S('us_message') !== ''")
    assert app.message() == ("The same volume is chosen for two inputs", "error")

    app.choose("us-input-t1", "T1prereg")
    app.page.locator(".v-input:has(#us-input-t2) .v-field__clearable i").click()
    app.wait("S('us_choice').t2 == null")
    app.page.locator("#us-uncertainty").check()  # scores every lesion (mirroring TTA)
    app.segment()
    unsure = app.get("us_low_confidence")
    text, kind = app.message()
    assert (kind == "success" and "OpenVINO" in text) or "torch" in text
    assert all(f"{n}" in text.split("low confidence: lesion")[-1] for n in unsure)
    assert app.get("us_lesion_mode") is True and app.get("us_lesion_count") >= 1
    assert len(app.get("us_lesions")) == app.get("us_lesion_count")
    assert app.page.locator("#us-lesions").is_visible()
    names = [s["name"] for s in app.get("us_segments")]
    assert names == ["oedema", "non-enhancing tumour core", "enhancing tumour"]
    _screenshot(app, tmp_path, "brain", settle_s=4)


def test_load_from_the_server_data_folder(app):
    assert app.get("us_data_folders") == [".", "chest-xray"]
    app.clear_message()
    app.choose("us-data-folder", "chest-xray")
    app.page.click("#us-load-data")
    app.wait("S('us_message') !== ''")
    text, kind = app.message()
    assert kind == "success", text
    assert [row["description"] for row in app.get("us_series")] == ["MCUCXR_0020_0.jpg"]


def test_cancel_midway_leaves_scene_unchanged(app):
    app.load_sample("Chest CT")
    assert app.get("us_model") == "lung-ct"
    scene_before = app.get("us_scene")
    app.page.locator("#us-overlap").fill("0.9")
    app.page.wait_for_timeout(300)
    app.clear_message()
    app.page.click("#us-segment")
    app.wait("S('us_running') && S('us_progress') > 0", 300)
    app.page.click("#us-cancel")
    app.wait("!S('us_running') && S('us_message_type') !== 'info'", 120)
    text, kind = app.message()
    assert kind == "warning" and "cancelled" in text.lower(), text
    assert app.get("us_has_result") is False
    assert app.get("us_scene") == scene_before
    assert app.get("us_scene")["Segmentation"] == []


def test_malformed_uploads_are_messages(app, server):
    text, kind = app.upload("broken.nii.gz", b"this is not a NIfTI file" * 20)
    assert kind == "error" and "broken.nii.gz" in text, text

    text, kind = app.upload("broken.zip", b"PK\x03\x04 truncated")
    assert kind == "error" and "not a valid zip" in text.lower(), text

    text, kind = app.upload("notes.txt", b"hello")
    assert kind == "error" and "not a supported file" in text, text

    # The server still answers: loading a sample works after the failures.
    app.load_sample("chest X-ray")


def test_too_large_upload_is_refused_before_sending(app):
    limit = app.get("us_max_upload_bytes")
    try:
        app.set("us_max_upload_bytes", 1000)  # the page's own check (the server checks again)
        text, kind = app.upload("big.nrrd", b"x" * 5000)
    finally:
        app.set("us_max_upload_bytes", limit)
    assert kind == "error" and text.startswith("Upload too large: 0.0 MB"), text
    assert "the limit is 1024 MB" in text  # the message states the server's limit


def test_zip_with_parent_entries_is_refused(app, server):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("case/readme.txt", "fine")
        zipped.writestr("../../evil.txt", "must never be written")
    text, kind = app.upload("case.zip", archive.getvalue())
    assert kind == "error" and "outside the upload folder" in text, text
    assert not list(server.root.rglob("evil.txt"))
    assert not list(server.root.parent.glob("evil.txt"))


def test_dicom_zip_upload_segment_and_save_dicom_seg(app, server, tmp_path):
    """A zip of a real CT as DICOM files: series listed with its description, lung-ct in 3D,
    the result saved as DICOM SEG and read back with pydicom."""
    import nibabel
    import pydicom

    from Testing.dicom_factory import writeDicomSeries

    image = nibabel.load(get_sample("chest-ct").paths[0])
    array = np.asarray(image.dataobj).transpose(2, 1, 0)  # nibabel (I, J, K) -> (K, J, I)
    ras_origin = image.affine[:3, 3]
    files = writeDicomSeries(
        tmp_path / "dicom",
        array,
        spacing=tuple(float(z) for z in image.header.get_zooms()),
        origin=(-ras_origin[0], -ras_origin[1], ras_origin[2]),  # RAS -> LPS
        modality="CT",
        seriesDescription="Thorax 2.5mm",
        seriesNumber=3,
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in files:
            zipped.write(path, f"study/series3/{path.name}")
    text, kind = app.upload("thorax-dicom.zip", archive.getvalue())
    assert kind == "success", text
    series = app.get("us_series")
    assert len(series) == 1 and "Thorax 2.5mm" in series[0]["description"]
    assert "DICOM 3: Thorax 2.5mm [CT]" in series[0]["description"]

    app.choose("us-task", "Lungs on CT")
    app.choose("us-model", "lung-ct")
    app.wait("S('us_model') === 'lung-ct' && S('us_choice').ct")
    assert app.get("us_choice") == {"ct": series[0]["id"]}
    app.segment()
    sizes = _voxels(app)
    assert sizes.keys() == {"right lung", "left lung"} and min(sizes.values()) > 1000
    view = _screenshot(app, tmp_path, "ct-3d", settle_s=6)  # 3D surfaces take a while
    assert view.std() > 20
    assert app.get("us_dicom_ok") is True
    assert not app.get("SegmentEditorState__can_undo")  # a new result starts a new history
    assert not app.get("SegmentEditorState__can_redo")

    saved = _save(app, server, "#us-save-dicom")
    assert saved.suffix == ".dcm"
    seg = pydicom.dcmread(saved)
    assert seg.Modality == "SEG"
    labels = {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}
    assert sorted(labels.values()) == ["left lung", "right lung"]
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    counts = dict.fromkeys(labels.values(), 0)
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    for frame, group in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        counts[labels[number]] += int(frame.sum())
    assert counts == sizes
