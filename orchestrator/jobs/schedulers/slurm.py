"""What is different on Slurm, in one place: how a job reaches its nodes, starts, is probed and is stopped.

Everything else is shared with the SSH path: planning and the per-node wrapper (`plan.render_node`: launch.sh,
env.sh mode 600, the ORCH_JOB_ID tag, pgid, exit_code, log, stack dumps), the store, fail-fast, logs and the CLI.
Slurm arbitrates its nodes: a busy node makes a job wait (PENDING, with Slurm's reason), orch locks nothing.

- Launch: one round trip to the login node (this machine when `[cluster.slurm] login` is unset) syncs the code
  into the shared workdir's cache, snapshots it once for the job, puts every rank's wrapper in
  `<workdir>/jobs/<id>/rank-N/`, and `sbatch`es `sbatch.sh` (`templates/sbatch.sh.j2`): one task per node under
  `srun --kill-on-bad-exit=1`, each task (`slurm_task.sh`) finds its rank and runs that rank's launch.sh.
  Every rank's record names the login node: its files (wrapper, log, exit code) are read there, on the shared
  workdir; the node Slurm ran it on is learnt from the rank's `node` file.
- Probe: one round trip reads `squeue` (state, reason) and every rank's files on the shared workdir, so exit
  codes are the workers' own. Slurm's final states without a failed rank (TIMEOUT, NODE_FAIL, ...) become the
  job's root cause; once Slurm forgets the job (MinJobAge) the recorded state stands.
- Stop: every rank: `scancel`; each task's trap then sweeps the job tag on its node (processes re-parented to PID 1
  escape Slurm with proctrack/linuxproc) and marks the sweep done; stop waits for the job to leave Slurm. Some
  ranks: their stop scripts run in an `srun --overlap` step on their nodes, and their tasks then end with 0, so
  Slurm's `--kill-on-bad-exit` leaves the other ranks running. A job recorded but never given its Slurm id (the
  launcher died around sbatch) is found by its name, `orch-<job id>`.
"""

from __future__ import annotations

import dataclasses
import posixpath
import shlex
import time
from pathlib import Path

from orchestrator.cluster import doctor as checks
from orchestrator.cluster import quickcheck
from orchestrator.cluster.inventory import Inventory, Node
from orchestrator.cluster.ssh import Session
from orchestrator.cluster.sync import FILTERS, SyncStats, cache_dir, sync
from orchestrator.errors import PlanError, RemoteError
from orchestrator.jobs import plan as planning
from orchestrator.jobs import feed, remote, states, worker
from orchestrator.jobs.faults import failpoint
from orchestrator.jobs.inputs import job_inputs
from orchestrator.jobs.render import environment, warm
from orchestrator.jobs.schedulers.base import (DoctorReport, LaunchRequest, Observation, Planned,
                                               RankView, Submitted, SubmitError, make_spec, preflight_failed)
from orchestrator.jobs.store import JobRecord, NodeRecord, Store

NAME = "slurm"
TITLE = "Slurm"
QUEUES = True
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
                    "SIGNALING", "STAGE_OUT", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "STOPPED"})
# Slurm's end states that are the cause themselves (no rank failed first): our wording of each
CAUSES = {
    "TIMEOUT": "reached its time limit (TIMEOUT)", "NODE_FAIL": "lost a node (NODE_FAIL)",
    "PREEMPTED": "was preempted (PREEMPTED)", "OUT_OF_MEMORY": "ran out of memory (OUT_OF_MEMORY)",
    "BOOT_FAIL": "could not boot a node (BOOT_FAIL)", "DEADLINE": "missed its deadline (DEADLINE)",
    "CANCELLED": "was cancelled outside orch (CANCELLED: scancel or an administrator)",
    "FAILED": "failed before its tasks ran (FAILED)",
    "GONE": "ended while nobody watched, and Slurm no longer knows it (past MinJobAge)",
}
STOP_WAIT_S = 60  # after scancel: KillWait + the sweeps, generously
SWEEP_GRACE_S = 2  # the task's own sweep must KILL before Slurm's KillWait kills the sweep
RANK_MARK = b"\n--orch-rank--\n"
SQUEUE_FORMAT = "%T|%r|%N"


class SlurmError(SubmitError):
    """sbatch refused the job, or a Slurm command failed: its own message, one line."""


def scheduled(job: JobRecord) -> dict:
    """The Slurm facts recorded with the job (`{"name": "slurm", "root", "login", "job_id", "state", ...}`);
    `job_id` only once sbatch answered."""
    return job.options.get("scheduler") or {}


def login_node(inventory: Inventory) -> Node:
    """Where sbatch/squeue/scancel run and the shared workdir is read: the login host, or this machine."""
    login = inventory.slurm.login if inventory.slurm else None
    node = dataclasses.replace(inventory.defaults, name=login or "slurm", host=login, addr=login or "127.0.0.1")
    if login is None and not posixpath.isabs(node.workdir):  # local commands run from $HOME: the same place
        node = dataclasses.replace(node, workdir=str(Path.home() / node.workdir))
    return node


def _targets(request_nodes: list[str] | None, listed: list[str]) -> tuple[int, list[str]]:
    """(node count, names in rank order) from `--nodes 2` or `--nodes a,b`; no --nodes: the [[nodes]] listed, else
    any one node."""
    if request_nodes and len(request_nodes) == 1 and request_nodes[0].isdigit():
        count = int(request_nodes[0])
        if count < 1:
            raise PlanError("--nodes must be at least 1")
        return count, []
    if request_nodes:
        if len(set(request_nodes)) != len(request_nodes):
            raise PlanError("a node is named twice in --nodes")
        for name in request_nodes:
            if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise PlanError(f"--nodes: {name!r} is not a node name")
        return len(request_nodes), list(request_nodes)
    return (len(listed), listed) if listed else (1, [])


def layout(inventory: Inventory, spec: planning.JobSpec, exclude: list[str] | None = None, render: bool = True
           ) -> tuple[planning.JobPlan, str, list[str]]:
    """The job's plan (one wrapper per rank under `<workdir>/jobs/<id>/rank-N`), its shared root and the sbatch
    arguments. Master address and port are derived by the batch script (`$MASTER_ADDR`, `$MASTER_PORT`). Without
    `render` the wrappers stay empty (a draft naming the ranks' folders)."""
    login = login_node(inventory)
    count, names = _targets(spec.nodes, [n.name for n in inventory.nodes])
    nodes = [inventory.node(name) for name in names] or [
        dataclasses.replace(inventory.defaults, name=f"rank{r}") for r in range(count)]
    nodes = [dataclasses.replace(n, host=login.host, workdir=login.workdir) for n in nodes]
    gpus = inventory.slurm.gpus_per_node
    nproc = planning.pick_nproc(nodes, spec.nproc_per_node or gpus)
    args = planning.torchrun_args(spec.command)
    root = posixpath.join(login.workdir, "jobs", spec.job_id)
    plans = []
    for rank, node in enumerate(nodes):
        env = planning.job_env(node, spec, rank, count, True)
        env.pop("ORCH_NODE")  # the task exports the node Slurm ran it on
        rank_dir = posixpath.join(root, f"rank-{rank}")
        plans.append(planning.render_node(
            spec, node, rank, count, nproc, args, env, rank_dir, master_addr='"$MASTER_ADDR"',
            master_port='"$MASTER_PORT"', shared_dir=root, grace_s=SWEEP_GRACE_S) if render else planning.NodePlan(
            node=node, rank=rank, job_dir=rank_dir, code_dir=posixpath.join(root, "code"), env=env,
            launch_script="", env_script="", stop_script=""))
    master = names[0] if names else "(first allocated node)"
    job_plan = planning.JobPlan(job_id=spec.job_id, master_addr=master, master_port=inventory.master_port or 0,
                                nnodes=count, nproc_per_node=nproc, torchrun_args=args, nodes=plans)
    return job_plan, root, sbatch_args(inventory, spec.job_id, root, count, names, exclude or [])


def sbatch_args(inventory: Inventory, job_id: str, root: str, count: int, names: list[str],
                exclude: list[str]) -> list[str]:
    """sbatch's options for this job, each one word (shell-quoted where it reaches a shell)."""
    s = inventory.slurm
    options = [f"--job-name=orch-{job_id}", f"--nodes={count}", "--ntasks-per-node=1",
               f"--output={root}/sbatch.log", "--parsable"]
    if names:
        options.append("--nodelist=" + ",".join(names))
    if exclude:
        options.append("--exclude=" + ",".join(exclude))
    for key, flag in (("partition", "partition"), ("account", "account"), ("qos", "qos"), ("time", "time"),
                      ("gpus_per_node", "gpus-per-node"), ("cpus_per_task", "cpus-per-task"), ("mem", "mem"),
                      ("constraint", "constraint")):
        value = getattr(s, key)
        if value is not None:
            options.append(f"--{flag}={value}")
    if s.exclusive:
        options.append("--exclusive")
    return options + list(s.extra)


def scripts(spec: planning.JobSpec, job_plan: planning.JobPlan, root: str, options: list[str],
            master_port: int | None) -> tuple[str, str]:
    """(sbatch.sh, slurm_task.sh) rendered from the templates (`--templates` overrides them too)."""
    templates = environment(spec.templates)
    # names asked for are the rank order (--nodelist keeps them); a count takes Slurm's order
    ranked = next((o.partition("=")[2].split(",") for o in options if o.startswith("--nodelist=")), [])
    context = dict(job_id=spec.job_id, nnodes=job_plan.nnodes, nproc_per_node=job_plan.nproc_per_node, root=root,
                   ranked_nodes=ranked, master_port=master_port, sbatch_args=[shlex.quote(o) for o in options])
    return (templates.get_template("sbatch.sh.j2").render(context),
            templates.get_template("slurm_task.sh.j2").render(context))


def plan(inventory: Inventory, request: LaunchRequest, job_id: str, render: bool = True) -> Planned:
    """Every rank's folder under the shared root, the sbatch arguments and, when `render`, the batch, task and
    wrapper scripts (a draft loads Jinja in the background instead, for the submit)."""
    spec = make_spec(request, job_id)
    job_plan, root, options = layout(inventory, spec, request.exclude, render)
    inputs = job_inputs(request.command, request.sync_paths, request.project_dir)
    rendered = dict(zip(("sbatch.sh", "slurm_task.sh"), scripts(spec, job_plan, root, options,
                                                                 inventory.master_port))) if render else {}
    return Planned(request=request, inventory=inventory, spec=spec, plan=job_plan, inputs=inputs, rendered=render,
                   facts={"root": root, "login": login_node(inventory).host, "sbatch_args": options},
                   scripts=rendered,
                   templates=None if render else warm(request.templates))


def describe(planned: Planned) -> str:
    """`--dry-run`: the batch script, the task script and every rank's wrapper, secrets masked."""
    root = planned.facts["root"]
    return (f"===== {root}/sbatch.sh\n{planned.scripts['sbatch.sh'].rstrip()}\n"
            f"===== {root}/slurm_task.sh\n{planned.scripts['slurm_task.sh'].rstrip()}\n"
            + planning.describe(planned.plan))


def submit(planned: Planned, store: Store, session: Session, job: JobRecord) -> Submitted:
    """Code to the shared workdir once, every rank's files in place, `sbatch`; the Slurm job id is recorded as soon
    as sbatch answers. One round trip when the code is current (quick check), else an rsync first. The job stays
    PENDING until Slurm runs it; a refused submission raises SlurmError with sbatch's own message."""
    if not planned.rendered:
        if planned.templates is not None:
            planned.templates.result()
        planned = plan(planned.inventory, planned.request, planned.spec.job_id)
    inventory, spec, job_plan, request = planned.inventory, planned.spec, planned.plan, planned.request
    root, options = planned.facts["root"], planned.facts["sbatch_args"]
    batch, task = planned.scripts["sbatch.sh"], planned.scripts["slurm_task.sh"]
    login = login_node(inventory)
    project = request.project_dir.resolve() if request.sync_code else None
    steps = [f"umask 077 && mkdir -p {shlex.quote(root)} && tar -x -C {shlex.quote(root)}"]
    synced: dict[str, SyncStats] = {}
    if project is not None:
        cache = cache_dir(login, spec.project_name)
        shared = planning.NodePlan(node=login, rank=0, job_dir=root, code_dir=posixpath.join(root, "code"), env={},
                                   launch_script="", env_script="", stop_script="")
        digest = quickcheck.tree_digest(project, planned.inputs.inside, tuple(FILTERS))
        session.connect(login)
        if digest and remote.stage_current_code(session, shared, cache, digest):
            synced[login.name] = SyncStats(login.name, [], 0, up_to_date=True)
        else:
            synced[login.name] = sync(session, login, project, cache, planned.inputs.inside, digest)
            src = shlex.quote(cache)
            steps.append(f"flock {src}.lock cp -al {src} {shlex.quote(shared.code_dir)}")
    else:
        steps.append(f"mkdir -p {shlex.quote(posixpath.join(root, 'code'))}")
    files = {"sbatch.sh": (batch, 0o700), "slurm_task.sh": (task, 0o700),
             "orch_site/sitecustomize.py": (remote.SITECUSTOMIZE.read_text(), 0o600)}
    if worker.runs_worker(spec.command):
        files.update(worker.code_files())
    # the shared env every rank runs (the login node's): the packages the model folder's own code imports
    code_dirs = worker.model_folders(planned.inputs.outside) if request.checks and request.worker_packages else ()
    gate = checks.imports_gate(login, code_dirs) if code_dirs else ""
    for p in job_plan.nodes:
        rank_dir = f"rank-{p.rank}"
        files.update({f"{rank_dir}/launch.sh": (p.launch_script, 0o700), f"{rank_dir}/env.sh": (p.env_script, 0o600),
                      f"{rank_dir}/stop.sh": (p.stop_script, 0o700)})
    steps.append(f"cd {shlex.quote(root)} && sbatch {shlex.join(options)} ./sbatch.sh")
    result = session.run(login, gate + " && ".join(steps), input=remote.tar_files(files), check=False, timeout=120)
    if gate and result.returncode == checks.IMPORTS_MISSING:
        raise preflight_failed(worker.env_problems([checks.parse_facts(login.name, result.text)], {}))
    if result.returncode != 0:
        raise SlurmError(_one_line(result.error_text) or f"sbatch exited {result.returncode}")
    slurm_id = result.text.strip().splitlines()[-1].split(";")[0]
    failpoint("after-submit")  # a launcher killed here has submitted a job it has not recorded
    store.set_option(job, "scheduler", {**scheduled(job), "job_id": slurm_id, "state": "PENDING", "reason": None,
                                        "submitted": True})
    return Submitted(plan=job_plan, synced=synced, headline=f"submitted as Slurm job {slurm_id} for",
                     files={"sbatch.sh": batch, "slurm_task.sh": task})


def _one_line(text: str) -> str:
    """sbatch's own message, one line: `sbatch: error: Batch job submission failed: Invalid partition ...`."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1]


def _probe_script(job: JobRecord, info: dict, offsets: dict[int, int] | None) -> str:
    """One shell command: squeue's view of the job, then every rank's wrapper files (and new log bytes)."""
    parts = [f"squeue -h -t all -j {shlex.quote(info['job_id'])} -o {shlex.quote(SQUEUE_FORMAT)} 2>&1",
             f"[ -f {shlex.quote(info['root'] + '/orch_cancel')} ] && echo orch_cancel=1",
             f"echo master=$(cat {shlex.quote(info['root'] + '/master')} 2>/dev/null)"]
    for record in job.nodes:
        d = shlex.quote(record.job_dir)
        parts.append(f"printf {shlex.quote(RANK_MARK.decode())}")
        parts.append(f"echo node_name=$(cat {d}/node 2>/dev/null)")
        parts.append(remote.probe_command(record.job_dir, None if offsets is None else offsets.get(record.rank),
                                          feed.metrics_offset(job.run_dir) if record.rank == 0 else None))
    return "; ".join(f"{{ {part}; }}" for part in parts)


def parse_probe(output: bytes) -> tuple[dict, list[tuple[states.Probe, bytes, str]]]:
    """`_probe_script`'s output: (Slurm's view `{state, reason, nodes, orch_cancel, master, forgotten}`, per rank
    in record order (its files' probe, new log bytes, the node it ran on))."""
    head, *chunks = output.split(RANK_MARK)
    view = {"state": None, "reason": None, "nodes": None, "orch_cancel": False, "master": None}
    text = head.decode("utf-8", "replace")
    view["forgotten"] = "Invalid job id" in text
    for line in text.splitlines():
        if line.startswith("orch_cancel="):
            view["orch_cancel"] = True
        elif line.startswith("master="):
            view["master"] = line[7:].strip() or None
        elif line.count("|") == 2 and "error" not in line:
            view["state"], reason, view["nodes"] = line.split("|")
            view["reason"] = None if reason in ("None", "") else reason
    words = (view["state"] or "").split()
    view["state"] = words[0] if words else None  # `CANCELLED by 0` -> CANCELLED; nothing when Slurm forgot it
    ranks = []
    for chunk in chunks:
        first, _, rest = chunk.partition(b"\n")
        name = first.decode("utf-8", "replace").partition("=")[2].strip()
        node_probe, log = remote.parse_probe(rest)
        ranks.append((node_probe, log, name))
    return view, ranks


def node_state(node_probe: states.Probe, slurm_state: str | None, previous: str) -> str:
    """A rank's state from its files and the job's Slurm state (liveness is Slurm's: the rank's processes run on
    another machine than the one reading the files)."""
    active = slurm_state in ACTIVE or (slurm_state is None and previous not in states.FINAL)
    if active and node_probe.stopping:
        return states.RUNNING
    if node_probe.exit_code is not None:
        return states.SUCCEEDED if node_probe.exit_code == 0 else states.FAILED
    if node_probe.stopped:  # its stop ran (the rank alone, or its task's own sweep): it has ended
        return states.STOPPED
    if slurm_state in ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD"):
        return states.PENDING
    if active:
        return states.RUNNING if node_probe.pgid is not None else states.STARTING
    if previous in states.FINAL:
        return previous
    return states.LOST if slurm_state == "NODE_FAIL" else states.STOPPED


def observation(job: JobRecord, view: dict, ranks: list[tuple[states.Probe, bytes, str]]) -> Observation | None:
    """What one probe says of every rank and of the job (a pure decision: canned squeue output and rank files in,
    states out). None when squeue did not answer (slurmctld busy or down): nothing learnt."""
    info = scheduled(job)
    if view["state"] is None and not view["forgotten"]:
        return None
    forgotten = view["state"] is None  # past MinJobAge: what was recorded stands
    slurm_state = info.get("state") if forgotten and info.get("state") not in ACTIVE else view["state"]
    if forgotten and info.get("state") in ACTIVE:
        slurm_state = "GONE"  # Slurm no longer knows a job it ran: whatever the ranks wrote is all there is
    seen = {}
    for record, (node_probe, log, name) in zip(job.nodes, ranks):
        seen[record.rank] = RankView(state=node_state(node_probe, slurm_state, record.state),
                                     probe=dataclasses.replace(node_probe, alive=False), log=log, node=name or None)
    cause = CAUSES.get(slurm_state or "")
    failed = any(v.state == states.FAILED for v in seen.values())
    ended_by = None
    if cause and not (slurm_state == "CANCELLED" and view["orch_cancel"]) and not (
            failed and slurm_state in ("FAILED", "CANCELLED")):
        ended_by = f"Slurm job {info.get('job_id')} {cause}"
    queued = slurm_state in ("PENDING", "CONFIGURING") and all(v.state == states.PENDING for v in seen.values())
    return Observation(ranks=seen, state=view["state"], reason=view["reason"], nodes=view["nodes"],
                       master=view["master"], ended_by=ended_by, queued=queued)


def observe(session: Session, job: JobRecord, offsets: dict[int, int] | None) -> Observation | None:
    """One round trip to the login node: squeue and every rank's files. None when it cannot be reached or squeue
    did not answer."""
    info = scheduled(job)
    if not info.get("job_id"):
        return None
    try:
        result = session.run(_login(job), _probe_script(job, info, offsets), timeout=30, check=False)
    except RemoteError:
        return None
    return observation(job, *parse_probe(result.stdout))


def _login(job: JobRecord) -> Node:
    """Where the Slurm commands run and every rank's files are read (each rank's record names it)."""
    return job.nodes[0].node


def read_log(session: Session, job: JobRecord, record: NodeRecord, offset: int = 0,
             lines: int | None = None) -> bytes:
    """A rank's log, read on the shared workdir through the login node."""
    return remote.read_log(session, record.node, record.job_dir, offset, lines)


def _job_ids(session: Session, job: JobRecord) -> list[str]:
    """The job's Slurm id: recorded, else looked up by its name (a launcher that died around sbatch never
    recorded it)."""
    info = scheduled(job)
    if info.get("job_id"):
        return [info["job_id"]]
    found = session.run(_login(job), f"squeue -h -t all -n {shlex.quote(f'orch-{job.id}')} -o %i 2>/dev/null",
                        timeout=30, check=False).text
    return found.split()


def stop(session: Session, job: JobRecord, records: list[NodeRecord] | None = None) -> dict[str, int | None]:
    """Every rank: `scancel`, then wait until Slurm has ended the job and every started rank's task has swept the
    job tag on its node. Some ranks: their stop scripts on their nodes (an `srun --overlap` step each, at once),
    the job itself keeps running. {node: 0 = clean, None = a sweep did not report}."""
    if records is not None and {r.rank for r in records} != {r.rank for r in job.nodes}:
        return _stop_ranks(session, job, records)
    login = _login(job)
    ids = _job_ids(session, job)
    if not ids:
        return {n.name: 0 for n in job.nodes}  # nothing was submitted
    root = shlex.quote(scheduled(job).get("root") or posixpath.dirname(job.nodes[0].job_dir))
    jids = " ".join(shlex.quote(i) for i in ids)
    session.run(login, f"touch {root}/orch_cancel; scancel {jids}", timeout=30, check=False)
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        state = session.run(login, f"squeue -h -t all -j {','.join(ids)} -o %T 2>/dev/null", timeout=30,
                            check=False).text
        if not set(state.split()) & ACTIVE:
            break
        time.sleep(0.2)
    return _swept(session, job, job.nodes)


def _swept(session: Session, job: JobRecord, records: list[NodeRecord]) -> dict[str, int | None]:
    """{node: 0} for each rank that never started or whose sweep left nothing, None where it did not report."""
    script = "; ".join(f"{{ [ ! -f {shlex.quote(r.job_dir)}/pgid ] || [ -f {shlex.quote(r.job_dir)}/stop_done ]; }}"
                       f" && echo clean={r.rank}" for r in records)
    done = session.run(_login(job), script, timeout=30, check=False).text.split()
    return {r.name: 0 if f"clean={r.rank}" in done else None for r in records}


def _stop_ranks(session: Session, job: JobRecord, records: list[NodeRecord]) -> dict[str, int | None]:
    """Stop some ranks only: mark each (`orch_stop`: its task then ends with 0, or never starts it), run its stop
    script in a step on its node, all at once; one round trip."""
    ids = _job_ids(session, job)
    parts = []
    for record in records:
        d = shlex.quote(record.job_dir)
        step = "" if not ids else (
            f"node=$(cat {d}/node 2>/dev/null); [ -z \"$node\" ] || [ ! -f {d}/pgid ] || [ -f {d}/stop_done ] || "
            f"srun --overlap --jobid={shlex.quote(ids[0])} --nodelist=\"$node\" --nodes=1 --ntasks=1 "
            f"env -u ORCH_JOB_ID bash {d}/stop.sh >/dev/null 2>&1")
        parts.append(f"( touch {d}/orch_stop; {step or ':'} ) &")
    session.run(_login(job), " ".join(parts) + " wait", timeout=STOP_WAIT_S, check=False)
    return _swept(session, job, records)


def dump_stacks(session: Session, job: JobRecord) -> dict[str, str]:
    """Stack dumps of every Python process of the job, from an `srun --overlap` step on each of its nodes."""
    info = scheduled(job)
    if not info.get("job_id"):
        return {}
    script = remote.stack_dump_script(job.id, posixpath.join(info["root"], "stacks"))  # the job's orch_site is shared
    command = (f"srun --overlap --jobid={shlex.quote(info['job_id'])} --nodes={len(job.nodes)} "
               f"--ntasks-per-node=1 --label bash -c {shlex.quote(script)}")
    try:
        return {"slurm": session.run(_login(job), command, timeout=60, check=False).text}
    except RemoteError as exc:
        return {"slurm": f"unreachable: {exc}"}


def relaunch(request: LaunchRequest, job: JobRecord, exclude: tuple[str, ...]) -> None:
    """The same nodes (or count), without `exclude` (-> sbatch --exclude)."""
    request.exclude = sorted({*request.exclude, *exclude})
    if request.nodes and not request.nodes[0].isdigit():
        request.nodes = [name for name in request.nodes if name not in exclude]


def doctor(session: Session, inventory: Inventory, names: list[str] | None) -> DoctorReport:
    """The login node's Python (the shared env every rank runs) and the partition's nodes as sinfo sees them:
    compute nodes are Slurm's to run things on, not SSH's."""
    from orchestrator.jobs.schedulers import slurm_doctor  # only `orch doctor` needs it

    wanted = names or [n.name for n in inventory.nodes]
    facts, nodes, sinfo_error = slurm_doctor.gather(session, login_node(inventory), inventory.slurm.partition)
    hard, soft = slurm_doctor.problems(inventory, facts, nodes, sinfo_error, wanted)
    return DoctorReport(facts=[facts], hard=hard, soft=soft,
                        smoke_nodes=wanted or [n.name for n in nodes if n.usable],
                        extra=slurm_doctor.as_json(facts, nodes), tables=[slurm_doctor.table(nodes)])
