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
    """Check every node: reachable, Python, torch/transformers/CUDA/NCCL versions, GPUs, disk, clock, route. Where
    a scheduler runs the nodes, what it can check without an allocation (its login node's Python, its nodes)."""
    from orchestrator.cli.tables import doctor_table, extra_table
    from orchestrator.cluster.inventory import load_inventory
    from orchestrator.cluster.ssh import Session
    from orchestrator.jobs import schedulers

    inventory = load_inventory(cluster_file)
    names = [n.strip() for n in nodes.split(",")] if nodes else None
    with Session(inventory.ssh_config) as session:
        report = schedulers.for_inventory(inventory).doctor(session, inventory, names)
    hard = list(report.hard)
    smoke_job = None
    if smoke and not hard:
        from orchestrator.jobs.smoke import run_smoke
        from orchestrator.jobs.store import Store

        smoke_job = run_smoke(inventory, report.smoke_nodes, Store())
        if smoke_job.state != "SUCCEEDED":
            hard.append(f"smoke all_reduce {smoke_job.state}: {smoke_job.root_cause or ''} (job {smoke_job.id})")
    if as_json:
        rows = [{k: v for k, v in vars(f).items() if k not in ("cache_entry", "then")} for f in report.facts]
        click.echo(json.dumps({"nodes": rows, **report.extra, "hard": hard, "soft": report.soft,
                               "smoke": smoke_job.state if smoke_job else None}))
    else:
        doctor_table(report.facts)
        for table in report.tables:
            extra_table(table)
        for line in report.soft:
            click.echo(f"warning: {line}")
        if smoke_job is not None and smoke_job.state == "SUCCEEDED":
            click.echo(f"smoke: all_reduce across {len(report.smoke_nodes)} node(s) OK (job {smoke_job.id})")
    if hard:
        raise OrchError("; ".join(hard))
