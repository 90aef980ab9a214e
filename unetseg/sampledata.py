"""The real sample images shipped with UNetSeg (``unetseg/sample_data/``), one per model.

``samples.json`` lists each sample: id, title, the model it is meant for, its files (each with
the model input it feeds) and its source, licence and citation. Plain Python: the Slicer modules
import it to register the samples with the Sample Data module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from unetseg.atomic import write_atomically

CATALOG = "samples.json"


@dataclass(frozen=True)
class SampleFile:
    """One image of a sample: its path and the model input it feeds."""

    path: Path
    input: str
    title: str


@dataclass(frozen=True)
class Sample:
    """A sample case (see module docstring)."""

    id: str
    title: str
    model: str
    modality: str
    files: tuple[SampleFile, ...]
    source: str
    license: str
    citation: str

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]


def sample_folder() -> Path:
    """The folder holding the sample images and ``samples.json``."""
    return Path(str(resources.files("unetseg").joinpath("sample_data")))


def list_samples() -> list[Sample]:
    """Every shipped sample, in catalog order."""
    folder = sample_folder()
    entries = json.loads((folder / CATALOG).read_text(encoding="utf-8"))["samples"]
    return [
        Sample(
            id=entry["id"],
            title=entry["title"],
            model=entry["model"],
            modality=entry["modality"],
            files=tuple(
                SampleFile(folder / f["file"], f["input"], f["title"]) for f in entry["files"]
            ),
            source=entry["source"],
            license=entry["license"],
            citation=entry["citation"],
        )
        for entry in entries
    ]


def get_sample(sample_id: str) -> Sample:
    """The sample ``sample_id``; ``KeyError`` naming the available ids otherwise."""
    samples = {sample.id: sample for sample in list_samples()}
    if sample_id not in samples:
        raise KeyError(f"no sample {sample_id!r}; available: {', '.join(samples)}")
    return samples[sample_id]


def copy_sample(sample_id: str, out_dir: str | Path) -> list[Path]:
    """Copy the files of a sample to ``out_dir/<sample id>/``; returns the copies' paths.
    Existing files of the same name are left as they are when identical, else an error."""
    sample = get_sample(sample_id)
    target = Path(out_dir) / sample.id
    target.mkdir(parents=True, exist_ok=True)
    copies = []
    for item in sample.files:
        copy = target / item.path.name
        data = item.path.read_bytes()
        if copy.exists() and copy.read_bytes() != data:
            raise FileExistsError(f"{copy} exists and differs from the sample: not replaced")
        if not copy.exists():
            write_atomically(copy, data)
        copies.append(copy)
    return copies
