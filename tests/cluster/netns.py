"""Bring up N real sshd "nodes", each in its own network + mount + UTS namespace, and tear them down.

Layout (all names carry a random tag, so two copies of the suite can run at once):
- a bridge `ob<tag>` in the root namespace holding 10.<a>.<b>.1/24; node i is 10.<a>.<b>.(i+2) in netns `on<tag>-i`,
  attached by a veth pair;
- inside each netns, `unshare --mount --uts --pid` gives the node a private /run (for /run/sshd), its own hostname,
  its own /etc/hosts, its own /proc (a node sees and signals only its own processes, as on separate machines), and
  a private workdir bind-mounted on the shared path `<root>/workdir`, so nodes do not share files;
- throwaway ed25519 host and client keys, a generated `ssh_config` and `known_hosts` under the cluster's temp
  folder; nothing in /etc/ssh or ~/.ssh is touched.
Needs root and Debian's openssh-server, openssh-client, rsync, iproute2.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.folder import ClusterFolder

SSHD = "/usr/sbin/sshd"


@dataclass
class TestNode:
    name: str
    netns: str
    addr: str
    root: Path  # the node's private files (workdir, hosts, sshd config)
    veth: str
    sshd: subprocess.Popen | None = None


@dataclass
class TestCluster(ClusterFolder):
    """A running test cluster: its inventory file, ssh_config and nodes."""

    root: Path
    tag: str
    bridge: str
    nodes: list[TestNode] = field(default_factory=list)

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    def node_path(self, name: str, *parts: str) -> Path:
        """A path inside node `name`'s private workdir, as seen from the controller."""
        node = next(n for n in self.nodes if n.name == name)
        return node.root.joinpath("work", *parts)

    def exec(self, name: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a shell command inside a node's namespaces (as a test's "hand on the node")."""
        node = next(n for n in self.nodes if n.name == name)
        return subprocess.run(
            ["nsenter", "-t", str(node_init_pid(node)), "-n", "-m", "-u", "-p", "bash", "-c", command],
            capture_output=True, text=True, timeout=timeout,
        )

    def down(self) -> None:
        """Kill everything running in the nodes, delete namespaces, links and files."""
        for node in self.nodes:
            pids = subprocess.run(["ip", "netns", "pids", node.netns], capture_output=True, text=True).stdout
            for pid in pids.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if node.sshd:
                node.sshd.wait(timeout=5)
        for node in self.nodes:
            subprocess.run(["ip", "netns", "del", node.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def node_init_pid(node: TestNode) -> int:
    """The node's PID 1 (its sshd), as seen from the root namespace: the child `unshare --fork` made."""
    children = Path(f"/proc/{node.sshd.pid}/task/{node.sshd.pid}/children").read_text().split()
    return int(children[0])


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _keygen(path: Path) -> None:
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path))


def _sshd_config(node: TestNode, host_key: Path, authorized: Path) -> str:
    return "\n".join([
        f"ListenAddress {node.addr}", "Port 22", f"HostKey {host_key}", f"AuthorizedKeysFile {authorized}",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "StrictModes no", "UseDNS no", "MaxStartups 100:30:200", "MaxSessions 100",
        "SetEnv SHLVL=1", f"PidFile {node.root}/sshd.pid", "AcceptEnv LANG LC_*", "LogLevel ERROR",
        "Subsystem sftp internal-sftp", "",
    ])


def up(n: int, base: Path | None = None, python: str = sys.executable) -> TestCluster:
    """Start `n` nodes (node0..node{n-1}) and write `cluster.toml` + `ssh_config` for them."""
    if os.geteuid() != 0:
        raise RuntimeError("the test cluster needs root (network namespaces)")
    tag = f"{random.randrange(16**5):05x}"
    net = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
    root = Path(base or "/tmp") / f"orch-cluster-{tag}"
    (root / "workdir").mkdir(parents=True)
    cluster = TestCluster(root=root, tag=tag, bridge=f"ob{tag}")
    try:
        _start(cluster, n, net, python)
    except BaseException:
        cluster.down()
        raise
    return cluster


def _start(cluster: TestCluster, n: int, net: str, python: str) -> None:
    root, tag = cluster.root, cluster.tag
    _keygen(root / "host_key")
    _keygen(root / "client_key")
    shutil.copy(root / "client_key.pub", root / "authorized_keys")
    host_pub = (root / "host_key.pub").read_text().split()[:2]
    _sh("ip", "link", "add", cluster.bridge, "type", "bridge")
    _sh("ip", "addr", "add", f"{net}.1/24", "dev", cluster.bridge)
    _sh("ip", "link", "set", cluster.bridge, "up")
    for i in range(n):
        node = TestNode(name=f"node{i}", netns=f"on{tag}-{i}", addr=f"{net}.{i + 2}",
                        root=root / "nodes" / f"node{i}", veth=f"ov{tag}{i}")
        (node.root / "work").mkdir(parents=True)
        cluster.nodes.append(node)
        _sh("ip", "netns", "add", node.netns)
        _sh("ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
        _sh("ip", "link", "set", node.veth, "master", cluster.bridge, "up")
        for cmd in (["ip", "addr", "add", f"{node.addr}/24", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                    ["ip", "link", "set", "lo", "up"]):
            _sh("ip", "netns", "exec", node.netns, *cmd)
    hosts = "127.0.0.1 localhost\n" + "".join(
        f"{nd.addr} {nd.name}\n::ffff:{nd.addr} {nd.name}\n" for nd in cluster.nodes)
    known = "".join(f"{nd.addr} {host_pub[0]} {host_pub[1]}\n" for nd in cluster.nodes)
    (root / "known_hosts").write_text(known)
    for node in cluster.nodes:
        (node.root / "hosts").write_text(hosts)
        (node.root / "sshd_config").write_text(_sshd_config(node, root / "host_key", root / "authorized_keys"))
        boot = (
            "mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && "
            f"mount --bind {node.root / 'hosts'} /etc/hosts && "
            f"mount --bind {node.root / 'work'} {cluster.workdir} && "
            f"hostname {node.name} && exec {SSHD} -D -e -f {node.root / 'sshd_config'}"
        )
        node.sshd = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
             "--propagation", "private", "sh", "-c", boot],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(node.root / "sshd.log", "wb"),
        )
    _write_client_files(cluster, python)
    _wait_ready(cluster)


def _write_client_files(cluster: TestCluster, python: str) -> None:
    root = cluster.root
    blocks = [
        f"Host {nd.name}\n  HostName {nd.addr}\n  User root\n  IdentityFile {root / 'client_key'}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {root / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n  KexAlgorithms curve25519-sha256\n  LogLevel ERROR\n"
        for nd in cluster.nodes
    ]
    cluster.ssh_config.write_text("\n".join(blocks))
    nodes = "".join(
        f'\n[[nodes]]\nname = "{nd.name}"\nhost = "{nd.name}"\naddr = "{nd.addr}"\n'
        f'env = {{ GLOO_SOCKET_IFNAME = "eth0" }}\n'
        for nd in cluster.nodes
    )
    cluster.inventory.write_text(
        "# generated by tests/cluster/netns.py\n[cluster]\n"
        f'workdir = "{cluster.workdir}"\npython = "{python}"\nssh_config = "{cluster.ssh_config}"\n'
        'master_port = "auto"\n\n[cluster.env]\nOMP_NUM_THREADS = "1"\n' + nodes
    )


def _wait_ready(cluster: TestCluster, timeout: float = 15) -> None:
    """Wait until every sshd accepts a real login."""
    deadline = time.monotonic() + timeout
    pending = list(cluster.nodes)
    while pending:
        node = pending[0]
        if node.sshd.poll() is not None:
            raise RuntimeError(f"sshd on {node.name} exited: {(node.root / 'sshd.log').read_text()}")
        probe = subprocess.run(["ssh", "-F", str(cluster.ssh_config), "-o", "ConnectTimeout=2", node.name, "true"],
                               capture_output=True, timeout=10)
        if probe.returncode == 0:
            pending.pop(0)
        elif time.monotonic() > deadline:
            raise RuntimeError(f"sshd on {node.name} not ready: {probe.stderr.decode()}")
        else:
            time.sleep(0.05)
