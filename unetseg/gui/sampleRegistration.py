"""Registering UNetSeg's bundled real samples with Slicer's Sample Data module.

Each module registers the samples of its own models (``unetseg.sampledata``) under the
"UNetSeg" category once the application has started. The files ship with the extension, so the
URIs are local ``file://`` URIs with SHA-256 checksums, which Sample Data copies into its cache
and loads like any other sample.
"""

import hashlib
from collections.abc import Iterable

from unetseg.sampledata import Sample, list_samples

CATEGORY = "UNetSeg"


def samplesForModels(modelIds: Iterable[str]) -> list[Sample]:
    """The shipped samples meant for any of ``modelIds``, in catalog order."""
    wanted = set(modelIds)
    return [sample for sample in list_samples() if sample.model in wanted]


def sampleDataArguments(sample: Sample) -> dict:
    """Keyword arguments of ``SampleDataLogic.registerCustomSampleDataSource`` for a sample."""
    return {
        "category": CATEGORY,
        "sampleName": sample.title,
        "uris": [item.path.as_uri() for item in sample.files],
        "fileNames": [f"{sample.id}-{item.path.name}" for item in sample.files],
        "nodeNames": [item.title for item in sample.files],
        "checksums": [
            "SHA256:" + hashlib.sha256(item.path.read_bytes()).hexdigest() for item in sample.files
        ],
        "loadFileTypes": ["VolumeFile"] * len(sample.files),
    }


def registerSampleData(modelIds: Iterable[str], sampleDataLogic=None) -> list[Sample]:
    """Register the samples of ``modelIds`` (call after the app started: Sample Data must be
    loaded). ``sampleDataLogic`` defaults to ``SampleData.SampleDataLogic``."""
    if sampleDataLogic is None:
        import SampleData

        sampleDataLogic = SampleData.SampleDataLogic
    samples = samplesForModels(modelIds)
    for sample in samples:
        sampleDataLogic.registerCustomSampleDataSource(**sampleDataArguments(sample))
    return samples
