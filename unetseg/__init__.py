"""UNetSeg: deep-learning segmentation for 3D Slicer.

Layers (see README): ``unetseg.engine`` (numpy/torch only), ``unetseg.host`` (MRML, runs in Slicer
and on ``slicer-core``), faces (Slicer modules, ``unetseg.cli``). The ``Training`` package of the
repository builds on the engine; nothing in ``unetseg`` imports it (``pip install .`` ships
``unetseg`` only).
"""

__version__ = "0.1.0"
