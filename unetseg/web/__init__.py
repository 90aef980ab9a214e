"""UNetSeg's web face on trame-slicer (``python -m unetseg.web``).

Load volumes (upload, a server folder or the bundled samples), choose a task and a model,
Segment on a background thread, correct the result in Slicer's segment editor and save it as
``.seg.nrrd`` or DICOM SEG. Modules, one job each:

- ``app``: the trame application (state, actions, wiring);
- ``panel``: the UNetSeg drawer (widgets only);
- ``uploads``: storing uploads safely (size limit, zip entries outside the folder refused);
- ``sources``: finding and loading series (samples, ``--data``, uploads);
- ``catalog``: tasks, models and their cards, input matching;
- ``runner``: the segmentation run (host layer, progress, cancel);
- ``results``: the per-segment volume table of the edited segmentation;
- ``saving``: ``.seg.nrrd`` and DICOM SEG, inside the output folder only.

Needs the ``web`` extra (``make web``); the other modules of UNetSeg never import this package.
"""
