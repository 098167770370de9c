"""`hmc_lib._parallel`: jobs in worker processes come back in order and equal to running
them here; bad arguments are named."""

import operator
import os

import pytest

from hmc_lib import _parallel


def test_map_processes_keeps_order_and_equals_running_here():
    jobs = [(1, 2), (3, 4), (5, 6)]
    assert _parallel.map_processes(operator.add, jobs, processes=2) == [3, 7, 11]
    assert _parallel.map_processes(operator.add, jobs, processes=1) == [3, 7, 11]
    assert _parallel.map_processes(operator.add, [], processes=2) == []
    # two jobs and two processes really run elsewhere; one process runs here
    assert os.getpid() not in _parallel.map_processes(os.getpid, [(), ()], processes=2)
    assert _parallel.map_processes(os.getpid, [(), ()], processes=1) == [os.getpid()] * 2


def test_map_processes_rejects_bad_processes():
    with pytest.raises(ValueError, match="processes"):
        _parallel.map_processes(operator.add, [(1, 2)], processes=0)
    assert 1 <= _parallel.num_processes() <= 2
