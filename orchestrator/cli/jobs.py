"""`orch launch | status | logs | stop`: the controller's verbs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import click

from orchestrator.cli.app import cli
from orchestrator.errors import OrchError

CONFIG_SUFFIXES = (".yaml", ".yml")
cluster_option = click.option("--cluster", "cluster_file", metavar="FILE",
                              help="Inventory TOML (default: $ORCH_CLUSTER, else ./cluster.toml, else localhost).")


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise OrchError(f"--env {pair!r}: expected NAME=VALUE")
        env[key] = value
    return env


def _command(args: tuple[str, ...], model: str | None = None, data_dir: str | None = None) -> list[str]:
    """A config YAML runs under the built-in worker (checked here first, so a typo starts nothing); anything else
    is the user's own command. `--model` / `--data-dir` go to the worker (paths as the nodes see them)."""
    if len(args) == 1 and args[0].endswith(CONFIG_SUFFIXES):
        from orchestrator.train.config import load_config

        load_config(args[0], on_controller=True, model=model, data_dir=data_dir)
        extra = [word for flag, value in (("--model", model), ("--data-dir", data_dir)) if value
                 for word in (flag, value)]
        return ["-m", "orchestrator.train", args[0], *extra]
    if model or data_dir:
        raise OrchError("--model and --data-dir apply to a training config (orch launch job.yaml), not to a command")
    return list(args)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@cluster_option
@click.option("--nodes", help="Comma-separated node names; rank order = this order. Default: all nodes. "
                               "Where the cluster's scheduler picks nodes, also a count (--nodes 2).")
@click.option("--all", "all_nodes", is_flag=True, help="Use every node in the inventory.")
@click.option("--nproc-per-node", type=int, help="Processes per node (default: the nodes' gpus, else 1).")
@click.option("--env", "env_pairs", multiple=True, metavar="NAME=VALUE", help="Extra environment for the job.")
@click.option("--no-sync", is_flag=True, help="Do not send the project folder (it is already on the nodes).")
@click.option("--sync", "sync_paths", multiple=True, metavar="PATH",
              help="A project file or folder to send even if .gitignore/.orchignore leave it out (repeatable); "
                   "the data, model and DeepSpeed files a training config names are sent this way by themselves.")
@click.option("--templates", type=click.Path(file_okay=False), help="Folder of templates overriding the built-ins.")
@click.option("--dry-run", is_flag=True, help="Print every node's rendered scripts and touch nothing.")
@click.option("--detach", is_flag=True, help="Return at once; a background watcher enforces fail-fast.")
@click.option("--force", is_flag=True, help="Start even if another running job uses these nodes.")
@click.option("--skip-checks", is_flag=True, help="Skip the preflight checks (versions, port) on the nodes.")
@click.option("--max-restarts", type=click.IntRange(0), default=0, show_default=True,
              help="Relaunch after a failure this many times (training resumes from its latest checkpoint).")
@click.option("--hang-timeout", type=click.FloatRange(min=1), metavar="SECONDS",
              help="No log output from any rank this long: dump every rank's stacks.")
@click.option("--on-hang", type=click.Choice(["fail", "wait"]), default="fail", show_default=True,
              help="After a hang report: stop the job as FAILED, or keep waiting.")
@click.option("--notify", metavar="CMD", help="Run CMD here (a shell line) with the job's JSON on stdin when it ends, "
                                             "fails, hangs or restarts (default: [cluster] notify).")
@click.option("--json", "as_json", is_flag=True, help="With --detach: print the job as JSON.")
@click.option("--model", "model_dir", help="Base model folder for a training config (overrides `model:`).")
@click.option("--data-dir", help="Folder a training config's relative data files resolve against.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def launch(cluster_file, nodes, all_nodes, nproc_per_node, env_pairs, no_sync, sync_paths, templates, dry_run, detach,
           force, skip_checks, max_restarts, hang_timeout, on_hang, notify, as_json, model_dir, data_dir, command):
    """Start CONFIG.yaml (the built-in worker) or `-- CMD ...` under torchrun on every node at once."""
    from orchestrator.cluster.inventory import load_inventory
    from orchestrator.jobs.launch import LaunchRequest, dry_run as render_dry_run, keep_run, launch as start_job
    from orchestrator.cluster.ssh import Session
    from orchestrator.jobs import schedulers
    from orchestrator.jobs.locks import ensure_free
    from orchestrator.jobs.store import Store, new_job_id

    if nodes and all_nodes:
        raise OrchError("give either --nodes or --all, not both")
    inventory = load_inventory(cluster_file)
    names = [n.strip() for n in nodes.split(",") if n.strip()] if nodes else None
    if nodes is not None and not names:
        raise OrchError("--nodes is empty")
    request = LaunchRequest(command=_command(command, model_dir, data_dir), nodes=names, nproc_per_node=nproc_per_node,
                            env=_parse_env(env_pairs), sync_code=not no_sync, sync_paths=list(sync_paths),
                            templates=templates, checks=not skip_checks, max_restarts=max_restarts,
                            hang_timeout=hang_timeout, on_hang=on_hang, notify=notify or inventory.notify)
    if dry_run:
        click.echo(render_dry_run(inventory, request), nl=False)
        return
    store = Store()
    if not schedulers.for_inventory(inventory).QUEUES:  # a queueing scheduler makes a job wait for busy nodes
        ensure_free(store, [n.name for n in inventory.select(names)], force)
    with Session(inventory.ssh_config) as session:
        launched = start_job(inventory, request, store, session, new_job_id(), keep=False)
    job = launched.job
    sent = sum(len(s.files_sent) for s in launched.synced.values())
    if as_json:
        click.echo(json.dumps(job.to_json()))
    else:
        click.echo(f"job {job.id}: {launched.submitted.headline} {len(job.nodes)} node(s) x {job.nproc_per_node} "
                   f"process(es) in {launched.seconds:.2f} s; master {job.master}; synced {sent} file(s)",
                   err=not detach)
        if not detach:
            click.echo(job.id)
    if detach and not as_json:
        click.echo(job.id)
    _start_supervisor(job.id, job.run_dir, keep=lambda: keep_run(job, launched.submitted, request, inventory))
    if detach:
        _leave()
    sys.exit(_follow_attached(store, job.id))


def _start_supervisor(job_id: str, run_dir: str, keep: Callable[[], None] | None = None) -> None:
    """A detached watcher that outlives this terminal: fail-fast, hang reports and restarts.

    With `keep` (the run folder's bookkeeping: rendered scripts, git state), this process forks: the child, in its
    own session with the supervisor's log as its output, runs `keep` and then becomes the watcher (`exec`), so this
    command returns as soon as the nodes run."""
    argv = [sys.executable, "-m", "orchestrator", "_supervise", job_id]
    Path(run_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    if keep is None:
        log = open(Path(run_dir) / "supervisor.log", "ab")
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                         env=os.environ.copy())
        return
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork():
        return
    try:  # the child: never returns into the command
        os.setsid()
        log = os.open(Path(run_dir) / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        try:
            keep()
        except BaseException:
            import traceback

            traceback.print_exc()
        os.execv(sys.executable, argv)
    finally:
        os._exit(1)


def _leave() -> None:
    """End a detached launch now: everything is printed and recorded and its watcher does the rest, so the
    interpreter's teardown (finalizing every module loaded; 20-200 ms measured here, more than the launch's last
    step) is skipped."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _follow_attached(store, job_id: str) -> int:
    """Follow rank 0's log (and of each restart), helping fail-fast; Ctrl-C detaches without stopping."""
    from orchestrator.cluster.ssh import Session
    from orchestrator.jobs import logs, watch

    job = store.get(job_id)
    try:
        while True:
            with Session(job.ssh_config) as session:
                logs.follow(store, session, job, logs.pick_nodes(job, None, False), prefixed=False,
                            on_tick=lambda j: watch.fail_fast(store, session, j))
            next_id = _await_restart(store, job)
            if next_id is None:
                break
            click.echo(f"orch: job {job.id} {job.state}; restarted as job {next_id}", err=True)
            job = store.get(next_id)
            if replaced := job.options.get("replaced"):
                from orchestrator.jobs.spares import describe

                click.echo(f"orch: job {next_id}: {describe(replaced)}", err=True)
    except KeyboardInterrupt:
        click.echo(f"\ndetached from job {job.id}: it keeps running. `orch logs {job.id} --follow` to watch again, "
                   f"`orch stop {job.id}` to stop it.", err=True)
        return 0
    from orchestrator.jobs.supervise import gave_up

    job = store.get(job.id)
    click.echo(f"job {job.id} {job.state}" + (f": {job.root_cause}" if job.root_cause else ""), err=True)
    if (line := gave_up(job)) is not None:
        click.echo(line, err=True)
    return 0 if job.state == "SUCCEEDED" else 1


def _await_restart(store, job, patience_s: float = 60) -> str | None:
    """The id of the job the supervisor relaunched this one as, if its restart policy calls for one."""
    request = job.options.get("request", {})
    if job.state != "FAILED" or job.stop_requested or job.attempt >= request.get("max_restarts", 0):
        return None
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        restarted = store.get(job.id).options.get("restarted_as")
        if restarted:
            return restarted
        time.sleep(0.3)
    return None


@cli.command("_supervise", hidden=True)
@click.argument("job_id")
def supervise(job_id: str) -> None:
    """Internal: watch a job until it and its restarts end (fail-fast, hang detection, restarts)."""
    from orchestrator.jobs.store import Store
    from orchestrator.jobs.supervise import supervise as run_supervisor

    store = Store()
    run_supervisor(store, store.get(job_id), poll_s=0.5, say=lambda text: print(text, flush=True))


@cli.command()
@click.argument("job_id", required=False)
@click.option("--exclude-node", "exclude", multiple=True, metavar="NAME",
              help="Relaunch without this node: a healthy spare takes its place, else the job runs on fewer nodes.")
@click.option("--no-spares", is_flag=True, help="Never put a spare in a failed or excluded node's place.")
@click.option("--nodes", help="Comma-separated node names to relaunch on, exactly (no spare is substituted).")
@click.option("--env", "env_pairs", multiple=True, metavar="NAME=VALUE",
              help="Set (or give again) an environment variable for the relaunch.")
@click.option("--detach", is_flag=True, help="Return at once instead of following rank 0's log.")
def restart(job_id, exclude, no_spares, nodes, env_pairs, detach):
    """Relaunch a finished job as a new job (training resumes from its latest checkpoint); a healthy spare takes
    the place of the node that failed."""
    from orchestrator.jobs.spares import describe
    from orchestrator.jobs.store import Store
    from orchestrator.jobs.supervise import restart as relaunch

    store = Store()
    job = store.get(job_id)
    if job.state not in ("SUCCEEDED", "FAILED", "STOPPED", "LOST"):
        raise OrchError(f"job {job.id} is {job.state}: stop it first")
    names = [n.strip() for n in nodes.split(",") if n.strip()] if nodes is not None else None
    if names is not None and (exclude or not names):
        raise OrchError("--nodes is empty" if not names else "give either --nodes or --exclude-node, not both")
    unknown = set(exclude) - {n.name for n in job.nodes}
    if unknown:
        raise OrchError(f"job {job.id} did not run on {', '.join(sorted(unknown))}")
    if len(set(exclude)) >= len(job.nodes) and no_spares:
        raise OrchError("--exclude-node would leave no node to run on")
    new_job = relaunch(store, job, tuple(exclude), use_spares=not no_spares, nodes=names, env=_parse_env(env_pairs))
    if replaced := new_job.options.get("replaced"):
        hint = "; --no-spares runs on fewer nodes instead" if set(replaced) & set(exclude) else ""
        click.echo(f"orch: job {new_job.id}: {describe(replaced)}{hint}", err=True)
    _start_supervisor(new_job.id, new_job.run_dir)
    click.echo(new_job.id)
    if not detach:
        sys.exit(_follow_attached(store, new_job.id))


def _refreshed(job_id: str | None):
    from orchestrator.cluster.ssh import Session
    from orchestrator.jobs import watch
    from orchestrator.jobs.store import Store

    store = Store()
    job = store.get(job_id)
    with Session(job.ssh_config) as session:
        watch.refresh(store, session, job)
    return job


@cli.command()
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=20, show_default=True, help="How many recent jobs to list.")
def status(job_id, as_json, limit):
    """Recent jobs, or one job's state per node."""
    from orchestrator.cli.tables import job_table, jobs_table
    from orchestrator.jobs.store import Store

    if job_id is None:
        store = Store()
        jobs = store.recent(limit)
        if as_json:
            click.echo(json.dumps([j.to_json() for j in jobs]))
        else:
            jobs_table(jobs)
        return
    from orchestrator.jobs.stragglers import of_run

    job = _refreshed(job_id)
    if as_json:
        click.echo(json.dumps({**job.to_json(), "stragglers": of_run(job.run_dir)}))
    else:
        job_table(job, of_run(job.run_dir))


@cli.command()
@click.argument("job_id", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends.")
@click.option("--node", help="Show this node's log instead of rank 0's.")
@click.option("--all", "every", is_flag=True, help="Every node, merged, with [node|rank] prefixes.")
def logs(job_id, follow, node, every):
    """Print a job's log (rank 0 by default)."""
    from orchestrator.cluster.ssh import Session
    from orchestrator.jobs import logs as job_logs
    from orchestrator.jobs.store import Store

    store = Store()
    job = store.get(job_id)
    records = job_logs.pick_nodes(job, node, every)
    with Session(job.ssh_config) as session:
        if follow:
            try:
                job_logs.follow(store, session, job, records, prefixed=every)
            except KeyboardInterrupt:
                pass
        else:
            job_logs.show(store, session, job, records, prefixed=every)


@cli.command()
@click.argument("job_id", required=False)
def stop(job_id):
    """Stop a job on every node: TERM its process group, sweep its tag, KILL what is left."""
    from orchestrator.cluster.ssh import Session
    from orchestrator.jobs import watch
    from orchestrator.jobs.store import Store

    store = Store()
    job = store.get(job_id)
    started = time.monotonic()
    with Session(job.ssh_config) as session:
        left = watch.stop_job(store, session, job)
    unreachable = [name for name, count in left.items() if count is None]
    leftover = {name: count for name, count in left.items() if count}
    click.echo(f"job {job.id} {job.state} ({time.monotonic() - started:.1f} s)")
    if unreachable:
        click.echo(f"warning: could not reach {', '.join(unreachable)}; its processes may still run", err=True)
    if leftover:
        raise OrchError(f"processes of job {job.id} still running: {leftover}")


@cli.command()
@click.argument("job_id", required=False)
@click.option("--start", is_flag=True, help="Also start TensorBoard on the copied event files.")
@click.option("--port", default=6006, show_default=True, help="Port for --start.")
def tb(job_id, start, port):
    """Bring the master node's TensorBoard event files to this machine and print (or run) tensorboard."""
    from orchestrator.jobs.store import Store
    from orchestrator.jobs.tensorboard import fetch_events

    store = Store()
    job = store.get(job_id)
    folder, count = fetch_events(job)
    if count == 0:
        raise OrchError(f"job {job.id}: no TensorBoard event files on {job.nodes[0].name} yet "
                        "(training_args.report_to must include tensorboard)")
    command = ["tensorboard", "--logdir", str(folder), "--port", str(port)]
    click.echo(f"{count} event file(s) in {folder}")
    click.echo(" ".join(command))
    if start:
        os.execvp(command[0], command)
