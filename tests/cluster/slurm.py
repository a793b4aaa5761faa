"""A real Slurm 22.05 cluster on this machine for tests: slurmctld + one slurmd per node, each in its own network,
UTS and mount namespace on a Linux bridge (the recipe in ../shared/SLURM.md).

Layout (names carry a random tag, so two copies of the suite can run at once):
- one munged on the host with its own key and socket under the cluster's folder;
- bridge `sb<tag>` holding 10.<a>.<b>.1/24 (the host runs sbatch/squeue/scancel with SLURM_CONF=<root>/slurm.conf);
  slurmctld at .2 in netns `sc<tag>`, node i (node1..nodeN) at .(10+i) in netns `sn<tag>-i`;
- daemons start under `nsenter --net` + `unshare --uts --mount` (not `ip netns exec`, which remounts /sys and
  breaks slurmd's cgroup probe), with a private /etc/hosts naming the nodes; each slurmd also gets its own PID
  namespace and /proc, so a node's job tasks see and sweep only that node's processes; the filesystem, so the
  workdir `<root>/workdir`, is shared by every node, as on a cluster with a shared home.
Needs root and Debian's slurmctld, slurmd, slurm-client and munge (scripts/setup.sh installs them).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.folder import ClusterFolder

TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo", "nsenter", "unshare",
         "ip")
CPUS_PER_NODE = 2


@dataclass
class SlurmCluster(ClusterFolder):
    """A running test Slurm cluster: its config, shared workdir, inventory and daemons."""

    root: Path
    tag: str
    net: str
    nodes: list[str] = field(default_factory=list)
    daemons: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """What a client (orch, sbatch) needs to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env})

    def forget_jobs(self) -> None:
        """Restart slurmctld with its saved state cleared: it knows no job any more, as MinJobAge leaves an ended
        job (without waiting MinJobAge and Slurm's purge interval); the nodes register again and come back idle."""
        ctld = self.daemons[0]
        ctld.terminate()
        ctld.wait(timeout=30)
        self.daemons[0] = _daemon(self, f"sc{self.tag}", "ctl", "slurmctld", "-D", "-c", "-f", str(self.conf))
        _wait(self, lambda: "is UP" in self.run("scontrol", "ping").stdout, self.daemons[0], "slurmctld")
        _wait(self, lambda: len(set(self.run("sinfo", "-h", "-N", "-t", "idle", "-o", "%N").stdout.split()))
              == len(self.nodes), None, "slurmd re-registering")

    def start_login(self) -> tuple[str, Path]:
        """An sshd on the controller's address (`ctl`, where sbatch/squeue/scancel work with this cluster's
        SLURM_CONF in every session): (its host alias, the ssh_config naming it with a checked host key)."""
        from tests.cluster.netns import TestNode, _keygen, _sshd_config

        node = TestNode(name="login", netns=f"sc{self.tag}", addr=f"{self.net}.2", root=self.root / "login", veth="")
        node.root.mkdir()
        for key in ("host_key", "client_key"):
            _keygen(node.root / key)
        shutil.copy(node.root / "client_key.pub", node.root / "authorized_keys")
        config = _sshd_config(node, node.root / "host_key", node.root / "authorized_keys")
        (node.root / "sshd_config").write_text(config.replace("SetEnv SHLVL=1", f"SetEnv SHLVL=1 SLURM_CONF={self.conf}"))
        boot = f"mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -f {node.root}/sshd_config"
        self.daemons.append(subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{node.netns}", "unshare", "--mount", "--propagation", "private", "sh",
             "-c", boot], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(node.root / "sshd.log", "wb"), start_new_session=True))
        host_key = (node.root / "host_key.pub").read_text().split()[:2]
        (node.root / "known_hosts").write_text(f"{node.addr} {host_key[0]} {host_key[1]}\n")
        ssh_config = node.root / "ssh_config"
        ssh_config.write_text(f"Host login\n  HostName {node.addr}\n  User root\n  IdentityFile {node.root}/client_key\n"
                              f"  IdentitiesOnly yes\n  UserKnownHostsFile {node.root}/known_hosts\n  LogLevel ERROR\n")
        ready = lambda: subprocess.run(["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
                                        "login", "squeue -h"], capture_output=True, timeout=10).returncode == 0
        _wait(self, ready, self.daemons[-1], "the login node's sshd")
        return "login", ssh_config

    def down(self) -> None:
        """Cancel jobs, kill every daemon and what runs in the namespaces, delete links, namespaces and files."""
        if self.daemons:
            try:
                self.run("scancel", "--full", "--quiet", "--user=root", timeout=5)
            except subprocess.TimeoutExpired:
                pass
        namespaces = [f"sc{self.tag}", *(f"sn{self.tag}-{i}" for i in range(1, len(self.nodes) + 1))]
        for ns in namespaces:
            _kill_netns(ns)
        for proc in self.daemons:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for ns in namespaces:
            subprocess.run(["ip", "link", "del", f"v{ns}"], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", f"sb{self.tag}"], capture_output=True)
        try:  # munged daemonizes itself: its pid file names it
            os.kill(int((self.root / "run" / "munged.pid").read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def _kill_netns(ns: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), sig)
            except ProcessLookupError:
                pass
        if pids and sig == signal.SIGTERM:
            time.sleep(0.3)


def missing() -> str | None:
    """Why this machine cannot run the test cluster, or None if it can."""
    if os.geteuid() != 0:
        return "the Slurm test cluster needs root (network namespaces, munged, slurmd)"
    for tool in TOOLS:
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/setup.sh installs slurmctld slurmd slurm-client munge)"
    return None


def up(n: int = 2, base: Path | None = None, python: str | None = None) -> SlurmCluster:
    """Start a controller and `n` nodes (node1..nodeN); write `cluster.toml` (scheduler = "slurm") for them."""
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    tag = f"{random.randrange(16**4):04x}"
    net = f"10.{random.randrange(100, 250)}.{random.randrange(1, 250)}"
    cluster = SlurmCluster(root=Path(base or "/tmp") / f"orch-slurm-{tag}", tag=tag, net=net)
    try:
        _start(cluster, n, python)
    except BaseException:
        cluster.down()
        raise
    return cluster


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _add_netns(cluster: SlurmCluster, ns: str, addr: str) -> None:
    veth = f"v{ns}"
    _sh("ip", "netns", "add", ns)
    _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _sh("ip", "link", "set", veth, "master", f"sb{cluster.tag}", "up")
    _sh("ip", "-n", ns, "link", "set", "lo", "up")
    _sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
    _sh("ip", "-n", ns, "link", "set", "eth0", "up")


def _daemon(cluster: SlurmCluster, ns: str, hostname: str, *argv: str, own_pids: bool = False) -> subprocess.Popen:
    """A daemon in netns `ns` with its own hostname and /etc/hosts; `own_pids`: also its own PID namespace and
    /proc (a node sees and signals only its own processes, and orphans re-parent to its PID 1, the slurmd)."""
    boot = 'hostname "$1"; mount --bind "$2" /etc/hosts; shift 2; exec "$@"'
    log = open(cluster.root / "log" / f"{hostname}.out", "wb")
    pids = ["--pid", "--fork", "--mount-proc"] if own_pids else []
    return subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{ns}", "unshare", "--uts", "--mount", *pids, "--propagation", "private",
         "sh", "-c", boot, "sh", hostname, str(cluster.root / "hosts"), *argv],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)


def _conf(cluster: SlurmCluster) -> str:
    root, net = cluster.root, cluster.net
    lines = [
        f"ClusterName=orch{cluster.tag}", f"SlurmctldHost=ctl({net}.2)", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={root}/munge/munge.sock",
        f"StateSaveLocation={root}/ctld", f"SlurmdSpoolDir={root}/spool/%n",
        f"SlurmctldPidFile={root}/run/slurmctld.pid", f"SlurmdPidFile={root}/run/slurmd-%n.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd-%n.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none",
        "SchedulerType=sched/backfill", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
        "MpiDefault=none", "MailProg=/bin/true", "SwitchType=switch/none", "ReturnToService=2",
        "SlurmdParameters=config_overrides", "MinJobAge=600", "KillWait=5", "InactiveLimit=0",
        "SlurmctldTimeout=30", "SlurmdTimeout=30", "Waittime=0",
        "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0", "OverTimeLimit=0",
    ]
    lines += [f"NodeName={name} NodeAddr={net}.{10 + i} NodeHostname={name} CPUs={CPUS_PER_NODE} Sockets=1 "
              f"CoresPerSocket={CPUS_PER_NODE} ThreadsPerCore=1 RealMemory=2000 State=UNKNOWN"
              for i, name in enumerate(cluster.nodes, 1)]
    lines.append("PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def _start(cluster: SlurmCluster, n: int, python: str | None) -> None:
    import sys

    root, net, tag = cluster.root, cluster.net, cluster.tag
    cluster.nodes = [f"node{i}" for i in range(1, n + 1)]
    for sub in ("log", "run", "ctld", "munge", "spool", "workdir"):
        (root / sub).mkdir(parents=True)
    for folder in (root, root / "munge"):
        folder.chmod(0o755)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    _sh("munged", f"--socket={root}/munge/munge.sock", f"--key-file={key}", f"--pid-file={root}/run/munged.pid",
        f"--log-file={root}/log/munged.log", f"--seed-file={root}/munge/munged.seed")
    bridge = f"sb{tag}"
    _sh("ip", "link", "add", bridge, "type", "bridge")
    subprocess.run(["ip", "link", "set", bridge, "type", "bridge", "nf_call_iptables", "0", "nf_call_ip6tables",
                    "0", "nf_call_arptables", "0"], capture_output=True)
    _sh("ip", "addr", "add", f"{net}.1/24", "dev", bridge)
    _sh("ip", "link", "set", bridge, "up")
    _add_netns(cluster, f"sc{tag}", f"{net}.2")
    for i, name in enumerate(cluster.nodes, 1):
        _add_netns(cluster, f"sn{tag}-{i}", f"{net}.{10 + i}")
    # the IPv4-mapped names too: gloo looks up its peers' addresses, and an unanswered lookup costs seconds
    (root / "hosts").write_text("127.0.0.1 localhost\n" + f"{net}.1 slhost\n{net}.2 ctl\n" + "".join(
        f"{net}.{10 + i} {name}\n::ffff:{net}.{10 + i} {name}\n" for i, name in enumerate(cluster.nodes, 1)))
    cluster.conf.write_text(_conf(cluster))
    ctld = _daemon(cluster, f"sc{tag}", "ctl", "slurmctld", "-D", "-f", str(cluster.conf))
    cluster.daemons.append(ctld)
    _wait(cluster, lambda: "is UP" in cluster.run("scontrol", "ping").stdout, ctld, "slurmctld")
    for i, name in enumerate(cluster.nodes, 1):
        cluster.daemons.append(_daemon(cluster, f"sn{tag}-{i}", name, "slurmd", "-D", "-f", str(cluster.conf),
                                       "-N", name, own_pids=True))

    def all_idle() -> bool:
        idle = cluster.run("sinfo", "-h", "-N", "-t", "idle", "-o", "%N").stdout.split()
        return len(set(idle)) == n

    _wait(cluster, all_idle, None, "slurmd")
    _write_inventory(cluster, python or sys.executable)


def _wait(cluster: SlurmCluster, ready, daemon: subprocess.Popen | None, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [d for d in ([daemon] if daemon else cluster.daemons) if d.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "".join(p.read_text()[-600:] for p in sorted((cluster.root / "log").glob("*.out")))
            raise RuntimeError(f"{what} did not come up: {logs}")
        time.sleep(0.1)


def _write_inventory(cluster: SlurmCluster, python: str) -> None:
    cluster.inventory.write_text(
        "# generated by tests/cluster/slurm.py\n[cluster]\nscheduler = \"slurm\"\n"
        f'workdir = "{cluster.workdir}"\npython = "{python}"\n\n'
        '[cluster.env]\nOMP_NUM_THREADS = "1"\nGLOO_SOCKET_IFNAME = "eth0"\n\n'
        '[cluster.slurm]\npartition = "debug"\n'
    )


if __name__ == "__main__":  # `python -m tests.cluster.slurm N`: bring one up by hand; Enter tears it down
    import sys

    by_hand = up(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    print(f"export SLURM_CONF={by_hand.conf} ORCH_CLUSTER={by_hand.inventory}")
    try:
        input("press Enter to tear down ")
    finally:
        by_hand.down()
