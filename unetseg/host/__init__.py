"""MRML host layer: the same code in the Slicer app and on ``slicer-core`` (no app, no Qt).

Functions take the scene or nodes as arguments and use only storage nodes, module logics and
``slicer.util`` array helpers (never ``slicer.app`` or ``slicer.modules``). Slicer's camelCase
naming is used here.

- ``scene_io``: ``newScene``, ``loadVolume``, ``loadSegmentation``, ``saveSegmentation``.
- ``image_files``: integrity checks of NIfTI inputs and written NRRD files.
- ``volumes``: ``volumeToArray`` / ``volumeGeometry`` (array (K, J, I) + engine ``Geometry``),
  ``describeVolume`` (the node as a candidate for ``unetseg.engine.matching.match_inputs``).
- ``segmentation``: ``writeLabelmapToSegmentation`` (label map to segments with terminology).
- ``report``: ``segmentStatistics`` (segment volumes, lesion table).
- ``exports``: NIfTI label maps, per-segment masks and statistics CSV of the command line.
"""
