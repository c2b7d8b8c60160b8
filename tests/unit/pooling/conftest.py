"""One torch thread for each pooling test module."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Thousands of tiny ops (loops, gradcheck): a second OpenMP thread only adds waiting,
    # and on a loaded machine each parallel region can stall for a scheduler time slice.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
