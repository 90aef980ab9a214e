"""Fixtures of the training tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread (and do not fight the other tests for cores); a
    module uses it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
