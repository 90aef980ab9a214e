"""Qt panel shared by the UNetSeg Slicer modules (BrainMetSeg, LungSeg, OvarianSeg).

Modules here that import ``qt``, ``ctk`` or the Slicer app run only inside 3D Slicer:
``moduleWidget`` (the panel), ``moduleLogic`` (the modules' Logic base), ``parameters``,
``dicomBrowser``, ``torchSetup``, ``jobPoller`` and ``selfTest``. ``modelCatalog``,
``seriesMatching`` and ``sampleModels`` are plain Python and are tested without Slicer.

Nothing in this package imports torch, jsonschema or safetensors at import time, so the modules
load (and can offer to install those packages) in a fresh Slicer.
"""
