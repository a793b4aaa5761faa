"""The shell snippets orch runs on nodes to start, probe, read logs of and stop a job, and their parsing."""

from __future__ import annotations

import io
import shlex
import tarfile
from pathlib import Path

from orchestrator.cluster import quickcheck
from orchestrator.cluster.inventory import Node
from orchestrator.cluster.ssh import Session
from orchestrator.errors import RemoteError
from orchestrator.jobs import feed
from orchestrator.jobs.plan import NodePlan
from orchestrator.jobs.states import Probe
from orchestrator.jobs.store import NodeRecord

LOG_MARK = b"\n--orch-log--\n"
SITECUSTOMIZE = Path(__file__).resolve().parent.parent / "templates" / "sitecustomize.py"
LOG_CHUNK = 1 << 20
PROBE_RECONNECT_S = 3
# a probe answers in milliseconds; one still pending after this long checks whether the node is there at all
PROBE_SUSPECT_S = 2


def tar_files(files: dict[str, tuple[str | bytes, int]]) -> bytes:
    """An in-memory tar of `{name: (text or bytes, mode)}`: one round trip puts all of a node's files in place."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (text, mode) in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def stage_current_code(session: Session, plan: NodePlan, cache: str, digest: str) -> bool:
    """Snapshot the node's code cache into the job folder if the cache already holds this exact project tree
    (quickcheck digest); False, touching nothing, when it needs a sync first."""
    result = session.run(plan.node, stage_command(plan, cache, digest), check=False)
    return staged(plan.node.name, result.returncode, result.error_text)


def stage_command(plan: NodePlan, cache: str, digest: str) -> str:
    """The shell of `stage_current_code` (a launch runs it in its preflight round trip)."""
    return quickcheck.stage_if_current(cache, digest, plan.job_dir, plan.code_dir)


def staged(node: str, returncode: int, error: str) -> bool:
    """Whether the stage command took the snapshot (False: the cache needs a sync first); RemoteError if it
    failed."""
    if returncode == quickcheck.NOT_CURRENT:
        return False
    if returncode != 0:
        raise RemoteError(f"node {node}: snapshot of the code cache failed: {error or f'exit {returncode}'}")
    return True


def put_and_start(session: Session, plan: NodePlan, snapshot_from: str | None, shared_code: str | None = None,
                  files: dict[str, tuple[bytes, int]] | None = None) -> None:
    """In one round trip: create the job folder with launch.sh, env.sh (mode 600), stop.sh and `files` (the
    shipped worker code), snapshot the code, and start the launch script detached in its own session (setsid),
    tagged with ORCH_JOB_ID.

    `snapshot_from` is the node's synced code cache: hard-linked into the job folder (`cp -al`), so a later sync
    never changes a running job's files (rsync replaces files, it does not write into them). With a shared
    filesystem, `shared_code` is the project folder itself, linked in place."""
    job_dir = shlex.quote(plan.job_dir)
    code = shlex.quote(plan.code_dir)
    steps = [f"umask 077 && mkdir -p {job_dir} && tar -x -C {job_dir}"]
    if snapshot_from:
        src = shlex.quote(snapshot_from)
        steps.append(f"flock {src}.lock cp -al {src} {code}")
    elif shared_code:
        steps.append(f"ln -s {shlex.quote(shared_code)} {code}")
    else:  # staged already, or no code sent
        steps.append(f"{{ [ -d {code} ] || mkdir -p {code}; }}")
    tag = f"ORCH_JOB_ID={shlex.quote(plan.env['ORCH_JOB_ID'])}"
    steps.append(f"cd {job_dir} && {tag} setsid -f bash ./launch.sh >log 2>&1 </dev/null")
    payload = tar_files({
        "launch.sh": (plan.launch_script, 0o700),
        "env.sh": (plan.env_script, 0o600),
        "stop.sh": (plan.stop_script, 0o700),
        "orch_site/sitecustomize.py": (SITECUSTOMIZE.read_text(), 0o600),
        **(files or {}),
    })
    session.run(plan.node, " && ".join(steps), input=payload)


def probe_command(job_dir: str, log_offset: int | None, metrics_offset: int | None = None) -> str:
    """Print key=value facts about the job folder (the metric feed's timing and GPUs among them), then
    (optionally) metrics.jsonl from `metrics_offset` on and the log from `log_offset` on."""
    d = shlex.quote(job_dir)
    feed_facts, feed_metrics = feed.probe_snippet(metrics_offset)
    script = (
        f"cd {d} 2>/dev/null || {{ echo dir=0; exit 0; }}; echo dir=1; "
        "pgid=$(cat pgid 2>/dev/null); echo pgid=$pgid; "
        # liveness before the exit code: the script writes exit_code before it exits, so a dead launcher seen
        # here always has its exit_code visible below (the other order races a job that ends mid-probe)
        "if [ -n \"$pgid\" ] && [ -r /proc/$pgid/status ] && ! grep -q '^State:[[:space:]]*Z' /proc/$pgid/status;"
        " then echo alive=1; else echo alive=0; fi; "
        "[ -f exit_code ] && echo exit_code=$(cat exit_code); "
        "[ -f started_at ] && echo started=$(cat started_at); "
        "[ -f ended_at ] && echo ended=$(cat ended_at); "
        "[ -f stopped_at ] && echo stopped=1; "
        "[ -f stop_started ] && [ ! -f stop_done ] && echo stopping=1; "
        "[ -f log ] && echo quiet=$(( $(date +%s) - $(stat -c %Y log) )); "
        "[ -f progress.json ] && echo \"progress=$(head -c 2000 progress.json | tr -d '\\n')\"; "
        f"{feed_facts}; "
        "echo last=$(tail -n 1 log 2>/dev/null | tr -d '\\r' | cut -c1-300)"
    )
    if feed_metrics:
        script += f"; {feed_metrics}"
    if log_offset is not None:
        script += f"; printf '\\n--orch-log--\\n'; tail -c +{log_offset + 1} log 2>/dev/null | head -c {LOG_CHUNK}"
    return script


def parse_probe(output: bytes) -> tuple[Probe, bytes]:
    """Parse `probe_command` output into a Probe and the log bytes that followed."""
    head, _, log = output.partition(LOG_MARK)
    lines, seen = feed.parse(head)
    facts: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            facts[key] = value

    def number(key: str, kind=int):
        try:
            return kind(facts[key])
        except (KeyError, ValueError):
            return None

    probe = Probe(
        reachable=True, dir_exists=facts.get("dir") == "1", pgid=number("pgid"), alive=facts.get("alive") == "1",
        exit_code=number("exit_code"), started=number("started", float), ended=number("ended", float),
        stopped=facts.get("stopped") == "1", stopping=facts.get("stopping") == "1",
        last_line=facts.get("last", ""), quiet_s=number("quiet", float), progress=facts.get("progress", ""),
        feed=seen,
    )
    return probe, log


def probe(session: Session, record: NodeRecord, log_offset: int | None = None, metrics_offset: int | None = None
          ) -> tuple[Probe, bytes]:
    """Look at one node's job; an unreachable node gives `Probe(reachable=False)`."""
    try:
        # a node that went away: the probe hangs on the dead connection; after PROBE_SUSPECT_S a TCP connect to
        # its SSH port (answered by the kernel even on a busy node) settles it within ~2 s more. Behind a proxy,
        # missed keep-alives end the connection (~10 s) and the reconnect is kept short.
        result = session.run(record.node, probe_command(record.job_dir, log_offset, metrics_offset), timeout=20,
                             reconnect_timeout=PROBE_RECONNECT_S, suspect_after=PROBE_SUSPECT_S)
    except RemoteError:
        return Probe(reachable=False), b""
    return parse_probe(result.stdout)


def stop(session: Session, record: NodeRecord) -> int:
    """Run the node's stop script; return how many tagged processes are left (0 = clean)."""
    script = shlex.quote(record.job_dir + "/stop.sh")
    result = session.run(record.node, f"if [ -f {script} ]; then bash {script}; else echo left=0; fi", timeout=60)
    for line in result.text.splitlines():
        if line.startswith("left="):
            return int(line[5:])
    return 0


def read_log(session: Session, node: Node, job_dir: str, offset: int = 0, lines: int | None = None) -> bytes:
    """A job folder's log on `node`: from byte `offset` on, or only its last `lines` lines."""
    path = shlex.quote(f"{job_dir}/log")
    read = f"tail -n {int(lines)} {path}" if lines else f"tail -c +{int(offset) + 1} {path}"
    return session.run(node, f"{read} 2>/dev/null || true", timeout=120).stdout


FREE_PORT_PY = "import socket; s = socket.socket(); s.bind(('', 0)); print(s.getsockname()[1])"


def free_port(session: Session, plan_node) -> int:
    """Ask the master node's Python for a port that is free there right now."""
    setup = "".join(f"{line}; " for line in plan_node.setup)
    result = session.run(plan_node, f"{setup}{shlex.quote(plan_node.python)} -S -c {shlex.quote(FREE_PORT_PY)}")
    return int(result.text.strip().splitlines()[-1])


# lists the job's Python processes, notes each one's dump file size, signals them all, waits once, prints what each
# wrote since (or py-spy's dump)
_DUMP_STACKS = r"""pids=
for e in /proc/[0-9]*/environ; do
  grep -qzxF "$tag" "$e" 2>/dev/null || continue
  p=${e#/proc/}; p=${p%/environ}
  case $(basename "$(readlink /proc/$p/exe)") in python*) pids="$pids $p";; esac
done
spy=$(command -v py-spy)
for p in $pids; do
  eval "size_$p=$(stat -c %s "$dir/$p" 2>/dev/null || echo 0)"
  [ -n "$spy" ] || kill -USR1 "$p" 2>/dev/null
done
[ -n "$spy" ] || [ -z "$pids" ] || sleep 1
for p in $pids; do
  echo "== pid $p: $(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | cut -c1-200)"
  if [ -n "$spy" ]; then py-spy dump --pid "$p" 2>&1
  elif [ -s "$dir/$p" ]; then eval "skip=\$size_$p"; tail -c +$((skip + 1)) "$dir/$p"
  else echo "(no stack dump: not started with the job's sitecustomize)"; fi
done
"""


def dump_stacks(session: Session, record: NodeRecord, job_id: str) -> str:
    """Every Python process of the job on this node, with its stacks: py-spy's when the node has it, else the
    faulthandler dump SIGUSR1 makes the job's sitecustomize write into `<job dir>/stacks/<pid>`."""
    try:
        return session.run(record.node, stack_dump_script(job_id, f"{record.job_dir}/stacks"), timeout=60,
                           check=False).text
    except Exception as exc:  # an unreachable node is itself the finding
        return f"unreachable: {exc}"


def stack_dump_script(job_id: str, stacks_dir: str) -> str:
    """Shell code that prints the stacks of every Python process tagged with the job (py-spy, else SIGUSR1 and what
    each process then wrote into `stacks_dir/<pid>`)."""
    return f"tag={shlex.quote(f'ORCH_JOB_ID={job_id}')}; dir={shlex.quote(stacks_dir)}\n" + _DUMP_STACKS
