"""Synthetic phantoms with exact labels for the four tasks, and writers for their folder layouts.

Generators return a ``SynthCase`` that unpacks as ``images, label, geometry`` (arrays (K, J, I),
2D: (J, I)); ``write_dataset`` (or ``python -m Training synth``) writes whole datasets.
"""

from Training.synth.brain import brain_mri_case
from Training.synth.case import SynthCase, SynthObject
from Training.synth.chest import lung_ct_case, lung_cxr_case
from Training.synth.pelvis import ovarian_ct_case
from Training.synth.space import random_geometry
from Training.synth.writers import TASK_LAYOUTS, write_dataset

__all__ = [
    "TASK_LAYOUTS",
    "SynthCase",
    "SynthObject",
    "brain_mri_case",
    "lung_ct_case",
    "lung_cxr_case",
    "ovarian_ct_case",
    "random_geometry",
    "write_dataset",
]
