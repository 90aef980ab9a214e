"""Held-out reference sets built from files of ``../shared/data`` for evaluating bundled models."""
