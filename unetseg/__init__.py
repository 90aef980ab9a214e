"""UNetSeg: deep-learning segmentation for 3D Slicer.

Layers (see README): ``unetseg.engine`` (numpy/torch only), ``unetseg.host`` (MRML, runs in Slicer
and on ``slicer-core``), faces (Slicer modules, ``unetseg.cli``), and the ``Training`` package.
"""

__version__ = "0.1.0"
