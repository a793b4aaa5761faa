"""Job states from node states: what `orch status` reports once nodes have failed, vanished or been stopped."""

from __future__ import annotations

import pytest

from orchestrator.jobs.states import FAILED, LOST, RUNNING, STOPPED, SUCCEEDED, job_state, root_cause


@pytest.mark.parametrize("nodes, stop_requested, expected", [
    ([SUCCEEDED, SUCCEEDED], False, SUCCEEDED),
    ([FAILED, STOPPED], False, FAILED),            # fail-fast stopped the other node
    ([STOPPED, LOST], False, FAILED),              # an unreachable node fails the job
    ([LOST, LOST], False, LOST),                   # orch lost sight of every node: it cannot tell what happened
    ([RUNNING, LOST], False, RUNNING),             # not final until fail-fast has stopped the others
    ([RUNNING, RUNNING], True, RUNNING),           # a stop in progress
    ([STOPPED, STOPPED], True, STOPPED),
])
def test_job_state(nodes, stop_requested, expected):
    assert job_state(nodes, stop_requested) == expected


def test_root_cause_names_the_first_node_to_fail_by_end_time():
    cause = root_cause(["a", "b", "c"], [0, 1, 2], [FAILED, FAILED, LOST], [1, 137, None], [20.0, 10.0, None])
    assert cause == "node b (node_rank 1) exited with exit code 137 (signal 9, SIGKILL)"
    assert "node c (node_rank 2) was lost" in root_cause(["a", "c"], [0, 2], [STOPPED, LOST], [None, None])
