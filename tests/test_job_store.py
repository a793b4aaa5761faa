"""Several processes watch one job (the attached `orch launch`, the detached supervisor, `orch status`): what one
of them records must survive the others' stale copies. A hang-failed job once read STOPPED in CI because the
attached watcher saved its old options over the supervisor's failure note."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.cluster.ssh import Session
from orchestrator.jobs import states, watch
from orchestrator.jobs.store import Store


def _launch_local_sleeper(tmp_path: Path, orch_home: Path) -> str:
    """A real job on the embedded localhost default that sleeps quietly; returns its id."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "sleeper.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    env = {**os.environ, "ORCH_HOME": str(orch_home)}
    env.pop("ORCH_CLUSTER", None)
    launched = subprocess.run([sys.executable, "-m", "orchestrator", "launch", "--detach", "--nproc-per-node", "1",
                               "--", "python", "sleeper.py"], cwd=project, env=env, capture_output=True, text=True,
                              timeout=120)
    assert launched.returncode == 0, launched.stderr
    return launched.stdout.split()[-1]


def _wait_running(store: Store, job_id: str) -> None:
    deadline = time.monotonic() + 60
    while store.get(job_id).state != states.RUNNING:
        assert time.monotonic() < deadline, store.get(job_id)
        time.sleep(0.2)


def test_options_written_by_one_watcher_survive_another_watchers_save(orch_home: Path, tmp_path: Path):
    store = Store()
    job_id = _launch_local_sleeper(tmp_path, orch_home)
    try:
        attached, supervisor = store.get(job_id), store.get(job_id)
        store.set_option(supervisor, "failure", "hang: test")
        store.save_progress(attached)  # the attached watcher's copy predates the note
        store.set_option(attached, "restarted_as", "abc")
        assert store.get(job_id).options["failure"] == "hang: test"
        assert store.get(job_id).options["restarted_as"] == "abc"
        assert store.get(job_id).options["request"]["command"]  # what launch wrote is still there
    finally:
        _stop(store, job_id)


def test_a_recorded_final_state_is_adopted_not_overwritten(orch_home: Path, tmp_path: Path):
    store = Store()
    job_id = _launch_local_sleeper(tmp_path, orch_home)
    _stop(store, job_id)
    stale = store.get(job_id)
    assert stale.state == states.STOPPED
    recorded_node = stale.nodes[0].state
    # a watcher whose probe predates the stop: it still sees the node running
    stale.state, stale.root_cause, stale.stop_requested = states.RUNNING, None, False
    stale.nodes[0].state, stale.nodes[0].ended = states.RUNNING, None
    store.save_progress(stale)
    again = store.get(job_id)
    assert (again.state, again.root_cause, again.stop_requested) == (states.STOPPED, None, True)
    assert again.nodes[0].state == recorded_node != states.RUNNING
    assert (stale.state, stale.nodes[0].state) == (states.STOPPED, recorded_node)  # it now agrees with the record


def test_a_watcher_probing_while_orch_fails_a_hung_job_reports_failed(orch_home: Path, tmp_path: Path):
    """The watcher's probe overlaps the supervisor noting the hang and stopping the nodes: the watcher sees
    stopped nodes and must call the job FAILED for the hang, not STOPPED."""
    store = Store()
    job_id = _launch_local_sleeper(tmp_path, orch_home)
    _wait_running(store, job_id)
    watcher, supervisor = store.get(job_id), store.get(job_id)

    class SupervisorActsMidProbe(Session):
        acted = False

        def run(self, node, command, **kwargs):
            if not self.acted and "exit_code" in command:
                self.acted = True
                store.set_option(supervisor, "failure", "hang: no log output from any rank for 10 s")
                watch.stop_nodes(self, supervisor)
            return super().run(node, command, **kwargs)

    with SupervisorActsMidProbe(watcher.ssh_config) as session:
        watch.refresh(store, session, watcher)
    assert session.acted
    assert watcher.state == states.FAILED and watcher.root_cause.startswith("hang: no log output")
    recorded = store.get(job_id)
    assert recorded.state == states.FAILED and recorded.root_cause.startswith("hang:")


def _stop(store: Store, job_id: str) -> None:
    job = store.get(job_id)
    with Session(job.ssh_config) as session:
        watch.stop_job(store, session, job)
