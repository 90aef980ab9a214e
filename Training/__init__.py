"""Headless training package: datasets (readers, splits, synthetic phantoms) and the command line
that builds UNetSeg model packages (``python -m Training <command>``)."""
