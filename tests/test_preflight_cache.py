"""The launch preflight's version cache: a node whose Python folders are unchanged answers from the cache (no
Python runs there for the check); an install on the node is seen by the very next check. A real venv on this
machine is the node (a local node: commands run under bash here, as over SSH)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.cluster import doctor
from orchestrator.cluster.inventory import Node
from orchestrator.cluster.ssh import Session


@pytest.fixture
def venv_node(tmp_path: Path, orch_home) -> Node:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    time.sleep(3)  # folders changed in the last seconds are never cached (a change could share their second)
    return Node(name="local", host=None, addr="127.0.0.1", gpus=0, workdir=str(tmp_path),
                python=str(venv / "bin" / "python"))


def _check(node: Node, **kwargs) -> doctor.NodeFacts:
    with Session() as session:
        return doctor.gather(session, [node], **kwargs)[0]


def test_unchanged_python_folders_answer_from_the_cache_and_an_install_is_seen_at_once(venv_node):
    first = _check(venv_node, pick_port=True)
    assert not first.cached and first.versions["torch"] and first.port
    again = _check(venv_node, pick_port=True, paths=("/nonexistent/data.jsonl",))
    assert again.cached and again.versions == first.versions and again.port and not again.error
    assert again.missing == ["/nonexistent/data.jsonl"] and again.disk_free_gb > 0  # read afresh every time
    # "pip install peft==9.9.9" into the node's env: its metadata lands in the venv's site-packages
    site = next(Path(venv_node.python).parent.parent.glob("lib/python3*/site-packages"))
    (site / "peft-9.9.9.dist-info").mkdir()
    (site / "peft-9.9.9.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: peft\nVersion: 9.9.9\n")
    after = _check(venv_node)
    assert not after.cached and after.versions["peft"] == "9.9.9"
    assert not _check(venv_node, deep=True).cached  # orch doctor always reads afresh


def test_a_busy_master_port_is_found_in_the_same_round_trip(venv_node):
    import socket

    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        facts = _check(venv_node, port=taken.getsockname()[1])
    hard, _ = doctor.problems([facts])
    assert facts.port_busy and "local: master port is already in use" in hard
