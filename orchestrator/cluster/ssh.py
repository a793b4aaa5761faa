"""Run commands on nodes: over one reused OpenSSH connection per node, or locally for a node without a host.

OpenSSH's own client is used (not paramiko) so that one ssh_config drives both commands and rsync: aliases,
ProxyJump, agent keys and known_hosts behave exactly as in the user's terminal. The first command to a node opens a
master connection (`-f -N`, stdio detached so it never holds our pipes); later commands multiplex over it (~10-20 ms
instead of a 150-280 ms handshake). Masters outlive the orch command that opened them, as SkyPilot's do: they stay
for `$ORCH_SSH_PERSIST` seconds (default 600) after their last use, so `orch status`, `logs`, `stop` and the next
launch skip the handshake. Their sockets live in `/tmp/orch-ssh-<uid>/<state folder + ssh_config>/`, a folder only
this user can enter; `ORCH_SSH_PERSIST=0` ends them with each command. Host keys are always checked: orch passes
BatchMode=yes and StrictHostKeyChecking=yes itself, which an ssh_config (even `StrictHostKeyChecking no`) cannot
loosen.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from orchestrator.cluster.inventory import Node
from orchestrator.errors import RemoteError

T = TypeVar("T")
CONNECT_TIMEOUT_S = 10
# a node that answers no keep-alive for KEEPALIVE_S x 3 seconds drops its connection: every command on it fails
# at once (watchers tell an unreachable node sooner by `suspect_after` + `tcp_reachable`, except behind a proxy)
KEEPALIVE_S = 3
TCP_CHECK_S = 2  # how long a TCP connect to a node's SSH port may take before the node counts as unreachable
PERSIST_ENV = "ORCH_SSH_PERSIST"  # seconds an idle master outlives the command that opened it; 0: ends with it
DEFAULT_PERSIST_S = 600
CONTROL_ROOT = "/tmp"  # short: a socket path must fit in 108 bytes


def persist_seconds() -> int:
    """How long idle master connections stay open after an orch command (`$ORCH_SSH_PERSIST`, default 600)."""
    try:
        return max(0, int(os.environ.get(PERSIST_ENV, DEFAULT_PERSIST_S)))
    except ValueError:
        return DEFAULT_PERSIST_S


def shared_control_dir(ssh_config: str | None) -> Path | None:
    """`/tmp/orch-ssh-<uid>/<hash>`: where this user's persisted masters for this state folder and ssh_config (as
    it is now) live; None when that folder is not safely ours (not a plain folder, another owner, open to others)."""
    from orchestrator.paths import orch_home

    top = Path(CONTROL_ROOT) / f"orch-ssh-{os.getuid()}"
    # an edited ssh_config (a host moved to another address) gets new masters: its mtime is part of the key
    configs = [ssh_config] if ssh_config else [os.path.expanduser("~/.ssh/config"), "/etc/ssh/ssh_config"]
    stamps = [str(os.stat(c).st_mtime_ns) if os.path.exists(c) else "-" for c in configs]
    key = hashlib.sha256("\0".join([str(orch_home().resolve()), ssh_config or "", *stamps]).encode()).hexdigest()[:12]
    for folder in (top, top / key):
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            info = folder.lstat()
        except OSError:
            return None
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            return None
    return top / key


def _socket_answers(path: Path) -> bool:
    """Whether a master connection listens on control socket `path`."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Result:
    """What a command printed and how it exited on one node."""

    node: str
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def error_text(self) -> str:
        return self.stderr.decode("utf-8", "replace").strip()


class Session:
    """Connections to a set of nodes for the life of one orch command. Use as a context manager."""

    def __init__(self, ssh_config: str | None = None):
        self.ssh_config = ssh_config
        self._persist = persist_seconds()
        shared = shared_control_dir(ssh_config) if self._persist else None
        self._persist = self._persist if shared else 0
        self._control_dir = shared or Path(tempfile.mkdtemp(prefix="orch-ssh-", dir="/tmp"))
        self._masters: dict[str, Node] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._targets: dict[str, tuple[str, int] | None] = {}  # node name -> where its SSH port is (tcp_reachable)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- building ssh command lines -------------------------------------------------------------------------
    def ssh_options(self, node: Node, connect_timeout: float = CONNECT_TIMEOUT_S) -> list[str]:
        """ssh options (no destination) shared by commands and rsync's `-e` for this node."""
        opts = ["ssh"]
        if self.ssh_config:
            opts += ["-F", self.ssh_config]
        opts += [
            # set here, whatever the ssh_config says: never a prompt, and only keys already in known_hosts
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={connect_timeout:.0f}",
            "-o", f"ControlPath={self.control_path(node)}",
            "-o", f"ServerAliveInterval={KEEPALIVE_S}",
            "-o", "ServerAliveCountMax=3",
        ]
        if node.user:
            opts += ["-l", node.user]
        if node.port:
            opts += ["-p", str(node.port)]
        if node.identity_file:
            opts += ["-i", node.identity_file]
        return opts

    def control_path(self, node: Node) -> Path:
        """The node's master socket: named by everything that picks the connection (host, user, port, key)."""
        who = f"{node.host}\0{node.user or ''}\0{node.port or ''}\0{node.identity_file or ''}"
        return self._control_dir / hashlib.sha256(who.encode()).hexdigest()[:20]

    def rsync_shell(self, node: Node) -> str:
        """The value for rsync's `-e`: the same ssh, over the same master connection."""
        self.connect(node)
        return shlex.join(self.ssh_options(node) + ["-o", "ControlMaster=no"])

    # -- connections ----------------------------------------------------------------------------------------
    def connect(self, node: Node) -> None:
        """Open the master connection to `node` once (thread-safe); raise RemoteError if it is unreachable."""
        if node.is_local:
            return
        with self._guard:
            lock = self._locks.setdefault(node.name, threading.Lock())
        with lock:
            if node.name in self._masters:
                return
            path = self.control_path(node)
            with open(f"{path}.lock", "w") as guard:  # one master per node, however many orch commands start
                fcntl.flock(guard, fcntl.LOCK_EX)
                if not (self._persist and _socket_answers(path)):
                    path.unlink(missing_ok=True)  # a master that died leaves its socket behind
                    self._open_master(node)
            self._masters[node.name] = node

    def _open_master(self, node: Node) -> None:
        """Start the node's master connection in the background; RemoteError naming ssh's reason if it fails."""
        persist = str(self._persist) if self._persist else "yes"
        argv = self.ssh_options(node) + [
            "-o", "ControlMaster=yes", "-o", f"ControlPersist={persist}", "-f", "-N", "--", node.host,
        ]
        with tempfile.TemporaryFile() as err:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                  timeout=CONNECT_TIMEOUT_S + 20)
            err.seek(0)
            message = err.read().decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            reason = message.splitlines()[-1] if message else f"ssh exited {proc.returncode}"
            raise RemoteError(f"node {node.name}: cannot connect to {node.host}: {reason}")

    def close(self) -> None:
        """Leave persisted masters to their idle timeout; otherwise end every master connection this session
        opened (all at once) and remove its control folder."""
        if self._persist:
            self._masters.clear()
            return
        enders = [subprocess.Popen(self.ssh_options(node) + ["-O", "exit", "--", node.host],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for node in self._masters.values()]
        for ender in enders:
            ender.wait()
        self._masters.clear()
        shutil.rmtree(self._control_dir, ignore_errors=True)

    # -- running --------------------------------------------------------------------------------------------
    def run(self, node: Node, command: str, *, input: bytes | None = None, timeout: float | None = 60,
            check: bool = True, reconnect_timeout: float = CONNECT_TIMEOUT_S,
            suspect_after: float | None = None) -> Result:
        """Run a shell command on `node` (from the login home; locally from $HOME). Every value inside
        `command` must already be quoted by the caller (shlex.quote). `reconnect_timeout` bounds the fresh
        connection ssh falls back to when the master connection has died (watchers keep it short). With
        `suspect_after`, a command still running after that many seconds makes us check that the node accepts
        a TCP connection at all; if it does not, the command is abandoned as unreachable (RemoteError)."""
        if node.is_local:
            argv = ["bash", "-c", command]
            cwd = str(Path.home())
        else:
            self.connect(node)
            argv = self.ssh_options(node, reconnect_timeout) + ["-o", "ControlMaster=no", "--", node.host, command]
            cwd = None
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
        try:
            stdout, stderr = self._wait(proc, node, input, timeout, None if node.is_local else suspect_after)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        result = Result(node.name, proc.returncode, stdout, stderr)
        if check and proc.returncode != 0:
            detail = result.error_text.splitlines()[-1] if result.error_text else f"exit code {proc.returncode}"
            if proc.returncode == 255 and not node.is_local:
                raise RemoteError(f"node {node.name}: ssh failed: {detail}")
            raise RemoteError(f"node {node.name}: remote command failed: {detail}")
        return result

    def _wait(self, proc: subprocess.Popen, node: Node, input: bytes | None, timeout: float | None,
              suspect_after: float | None) -> tuple[bytes, bytes]:
        """The command's output; RemoteError when it outlives `timeout` or the node is found unreachable."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if suspect_after is not None and (timeout is None or suspect_after < timeout):
            try:
                return proc.communicate(input, timeout=suspect_after)
            except subprocess.TimeoutExpired:
                input = None  # already being sent; communicate() resumes where it stopped
                if self.tcp_reachable(node) is False:
                    raise RemoteError(f"node {node.name}: unreachable (no answer for {suspect_after:.0f} s and "
                                      f"no TCP connection to its SSH port)") from None
        try:
            return proc.communicate(input, timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise RemoteError(f"node {node.name}: command timed out after {timeout:.0f} s") from None

    def tcp_reachable(self, node: Node, timeout: float = TCP_CHECK_S) -> bool | None:
        """Whether the node's SSH port accepts a TCP connection (the kernel answers that even when the node is
        busy); None when it is reached through a proxy, so that cannot be told from here."""
        target = self._tcp_target(node)
        if target is None:
            return None
        try:
            socket.create_connection(target, timeout=timeout).close()
        except socket.gaierror:  # a name lookup failing says nothing about the node itself
            return None
        except OSError:
            return False
        return True

    def _tcp_target(self, node: Node) -> tuple[str, int] | None:
        """(hostname, port) that ssh connects to for `node`, as `ssh -G` resolves it; None behind a proxy."""
        if node.name not in self._targets:
            resolved = subprocess.run(self.ssh_options(node) + ["-G", "--", node.host], capture_output=True,
                                      text=True, stdin=subprocess.DEVNULL, timeout=10)
            settings = dict(line.split(" ", 1) for line in resolved.stdout.splitlines() if " " in line)
            proxied = settings.get("proxyjump", "none") != "none" or settings.get("proxycommand", "none") != "none"
            ok = resolved.returncode == 0 and not proxied and "hostname" in settings
            self._targets[node.name] = (settings["hostname"], int(settings.get("port", 22))) if ok else None
        return self._targets[node.name]


def fan_out(nodes: Iterable[Node], work: Callable[[Node], T]) -> dict[str, T]:
    """Run `work(node)` on every node at once; return results by node name in input order.

    If any node fails, raise one RemoteError naming every failed node (the others' work has completed)."""
    nodes = list(nodes)
    results: dict[str, T] = {}
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        futures = {node.name: pool.submit(work, node) for node in nodes}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except RemoteError as exc:
                errors.append(str(exc))
    if errors:
        raise RemoteError("; ".join(errors))
    return results


