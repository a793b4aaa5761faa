"""`orch doctor`: preflight checks on every node at once, optionally a real all_reduce smoke test."""

from __future__ import annotations

import json

import click

from orchestrator.cli.app import cli
from orchestrator.cli.jobs import cluster_option
from orchestrator.errors import OrchError


@cli.command()
@cluster_option
@click.option("--nodes", help="Comma-separated node names (default: all); the first is the master.")
@click.option("--smoke", is_flag=True, help="Also run a tiny all_reduce across the nodes (with a timeout).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(cluster_file, nodes, smoke, as_json):
    """Check every node: reachable, Python, torch/transformers/CUDA/NCCL versions, GPUs, disk, clock, route. On
    Slurm: the login node's Python (the shared env the ranks run) and the partition's nodes as sinfo sees them."""
    from orchestrator.cli.tables import doctor_table
    from orchestrator.cluster import doctor as checks
    from orchestrator.cluster.inventory import load_inventory
    from orchestrator.cluster.ssh import Session

    inventory = load_inventory(cluster_file)
    names = [n.strip() for n in nodes.split(",")] if nodes else None
    slurm_nodes, extra = None, {}
    with Session(inventory.ssh_config) as session:
        if inventory.scheduler == "slurm":  # the login node's Python and sinfo: compute nodes are Slurm's
            from orchestrator.jobs import slurm_doctor

            wanted = names or [n.name for n in inventory.nodes]
            login_facts, slurm_nodes, sinfo_error = slurm_doctor.gather(session, inventory)
            facts = [login_facts]
            hard, soft = slurm_doctor.problems(inventory, login_facts, slurm_nodes, sinfo_error, wanted)
            extra = slurm_doctor.as_json(login_facts, slurm_nodes)
            smoke_nodes = wanted or [n.name for n in slurm_nodes if n.usable]
        else:
            selected = inventory.select(names)
            facts = checks.gather(session, selected, inventory.master_port, deep=True)
            hard, soft = checks.problems(facts)
            smoke_nodes = [n.name for n in selected]
    smoke_job = None
    if smoke and not hard:
        from orchestrator.jobs.smoke import run_smoke
        from orchestrator.jobs.store import Store

        smoke_job = run_smoke(inventory, smoke_nodes, Store())
        if smoke_job.state != "SUCCEEDED":
            hard.append(f"smoke all_reduce {smoke_job.state}: {smoke_job.root_cause or ''} (job {smoke_job.id})")
    if as_json:
        rows = [{k: v for k, v in vars(f).items() if k not in ("cache_entry", "then")} for f in facts]
        click.echo(json.dumps({"nodes": rows, **extra, "hard": hard, "soft": soft,
                               "smoke": smoke_job.state if smoke_job else None}))
    else:
        doctor_table(facts)
        if slurm_nodes is not None:
            from orchestrator.cli.tables import slurm_nodes_table

            slurm_nodes_table(slurm_nodes)
        for line in soft:
            click.echo(f"warning: {line}")
        if smoke_job is not None and smoke_job.state == "SUCCEEDED":
            click.echo(f"smoke: all_reduce across {len(smoke_nodes)} node(s) OK (job {smoke_job.id})")
    if hard:
        raise OrchError("; ".join(hard))
