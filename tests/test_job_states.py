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


def test_root_cause_names_a_lost_node_when_none_failed():
    assert "node c (node_rank 2) was lost" in root_cause(["a", "c"], [0, 2], [STOPPED, LOST], [None, None])
