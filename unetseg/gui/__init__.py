"""Qt panel shared by the UNetSeg Slicer modules (BrainMetSeg, LungSeg, OvarianSeg).

Run only inside 3D Slicer (they import ``qt`` or the Slicer app): ``moduleWidget`` (the panel),
``moduleLogic`` (the modules' Logic base), ``parameters``, ``dicomBrowser``, ``torchSetup``,
``jobPoller`` and ``resultsView``. ``selfTest`` needs only MRML (also runs on slicer-core).
``modelCatalog``, ``seriesMatching``, ``sampleModels`` and ``dependencies`` are plain Python.

Nothing in this package imports torch, jsonschema or safetensors at import time, so the modules
load (and can offer to install those packages) in a fresh Slicer.
"""
