"""Dataset inspection (``python -m Training inspect``): an HTML report of a labelled dataset,
read with the project's readers one case at a time.

Modules, one job each: ``sampling`` (foreground mask and the seeded, capped, label-stratified
voxel sample of a case), ``statistics`` (per-case numbers, histograms, correlations, label
volumes, lesion sizes, outliers), ``embedding`` (t-SNE of sampled voxels), ``figures`` (PNGs),
``html`` (the page) and ``pipeline`` (``inspect_dataset``: the streamed pass over the cases).
"""

from Training.inspect.pipeline import inspect_dataset

__all__ = ["inspect_dataset"]
