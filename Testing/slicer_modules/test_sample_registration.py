"""Sample Data registration of the shipped samples.

Slicer's Sample Data module needs the desktop application, which cannot run here: a stand-in
records the calls, with the keyword arguments of ``registerCustomSampleDataSource`` as in
Slicer 5.10 (a wrong keyword raises TypeError). What it checks is real: the URIs open the
shipped files and the checksums are those files' SHA-256, as Sample Data verifies on download.
"""

from __future__ import annotations

import hashlib
import urllib.request
from typing import ClassVar

from unetseg.gui.sampleRegistration import CATEGORY, registerSampleData


class SampleDataLogicStandIn:
    calls: ClassVar[list[dict]] = []

    @staticmethod
    def registerCustomSampleDataSource(
        category="Custom",
        sampleName=None,
        uris=None,
        fileNames=None,
        nodeNames=None,
        customDownloader=None,
        thumbnailFileName=None,
        loadFileTypes=None,
        loadFiles=None,
        loadFileProperties=None,
        checksums=None,
        loadFileType=None,
    ):
        SampleDataLogicStandIn.calls.append(
            {
                "category": category,
                "uris": uris,
                "fileNames": fileNames,
                "nodeNames": nodeNames,
                "checksums": checksums,
                "loadFileTypes": loadFileTypes,
            }
        )


def test_lung_module_registers_its_ct_and_xray_samples_with_valid_uris_and_checksums():
    SampleDataLogicStandIn.calls = []
    samples = registerSampleData(("lung-ct", "lung-cxr"), SampleDataLogicStandIn)
    assert [s.id for s in samples] == ["chest-ct", "chest-xray"]
    for call in SampleDataLogicStandIn.calls:
        assert call["category"] == CATEGORY
        counts = {len(call[k]) for k in ("uris", "fileNames", "nodeNames", "checksums")}
        assert counts == {len(call["loadFileTypes"])}
        for uri, checksum in zip(call["uris"], call["checksums"], strict=True):
            with urllib.request.urlopen(uri) as handle:  # as Sample Data downloads it
                data = handle.read()
            assert checksum == "SHA256:" + hashlib.sha256(data).hexdigest()


def test_a_module_without_shipped_samples_registers_nothing():
    SampleDataLogicStandIn.calls = []
    assert registerSampleData(("ovarian-ct",), SampleDataLogicStandIn) == []
    assert SampleDataLogicStandIn.calls == []
