"""How a watcher tells a node that went away from a slow one: a TCP connect to the SSH port ssh would use
(resolved by `ssh -G`, so aliases, ports and proxies in the user's ssh_config count). Loopback only."""

from __future__ import annotations

import socket
from pathlib import Path

from orchestrator.cluster.inventory import Node
from orchestrator.cluster.ssh import Session


def _node(name: str, host: str, port: int | None = None) -> Node:
    return Node(name=name, host=host, addr="127.0.0.1", gpus=0, workdir="/tmp", python="python3", port=port)


def test_a_listening_ssh_port_is_reachable_and_a_closed_one_is_not(tmp_path: Path):
    config = tmp_path / "ssh_config"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    open_port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]  # bound, never listening: connections are refused
    config.write_text(f"Host alive\n  HostName 127.0.0.1\n  Port {open_port}\n"
                      f"Host gone\n  HostName 127.0.0.1\n  Port {closed_port}\n")
    try:
        with Session(str(config)) as session:
            assert session.tcp_reachable(_node("a", "alive")) is True
            assert session.tcp_reachable(_node("g", "gone")) is False
            assert session.tcp_reachable(_node("p", "alive", port=closed_port)) is False  # the node's own port wins
    finally:
        listener.close()
        closed.close()


def test_a_node_behind_a_proxy_cannot_be_judged_from_here(tmp_path: Path):
    config = tmp_path / "ssh_config"
    config.write_text("Host inner\n  HostName 10.0.0.7\n  ProxyJump bastion\n"
                      "Host viacmd\n  HostName 10.0.0.8\n  ProxyCommand nc %h %p\n")
    with Session(str(config)) as session:
        assert session.tcp_reachable(_node("i", "inner")) is None
        assert session.tcp_reachable(_node("v", "viacmd")) is None


def test_persisted_masters_live_only_in_a_folder_that_is_ours_and_closed(tmp_path: Path, monkeypatch, orch_home):
    """Another user's (or a world-readable) folder at the shared path is never used: the session falls back to a
    private folder whose masters end with it."""
    import os

    from orchestrator.cluster import ssh

    monkeypatch.setattr(ssh, "CONTROL_ROOT", str(tmp_path))
    folder = ssh.shared_control_dir(None)
    assert folder is not None and folder.parent == tmp_path / f"orch-ssh-{os.getuid()}"
    assert (folder.stat().st_mode & 0o777, folder.parent.stat().st_mode & 0o777) == (0o700, 0o700)
    folder.parent.chmod(0o755)  # open to others, as a folder someone else made there would be
    assert ssh.shared_control_dir(None) is None
    with Session() as session:
        assert not str(session.control_path(_node("a", "alive"))).startswith(str(tmp_path))
    folder.parent.chmod(0o700)
    monkeypatch.setenv("ORCH_SSH_PERSIST", "0")  # opted out: never the shared folder
    with Session() as session:
        assert not str(session.control_path(_node("a", "alive"))).startswith(str(tmp_path))
