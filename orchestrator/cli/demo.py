"""`orch demo`: a small real fine-tune end to end on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli.app import cli
from orchestrator.cli.jobs import cluster_option


@cli.command()
@cluster_option
@click.option("--dir", "workspace", default="orch-demo", show_default=True, type=click.Path(file_okay=False),
              help="Demo project folder (recreated).")
@click.option("--nproc-per-node", default=2, show_default=True, help="Training processes.")
@click.option("--epochs", default=40, show_default=True, help="Passes over the sample data.")
def demo(cluster_file, workspace, nproc_per_node, epochs):
    """Build a tiny model, LoRA-train it through the controller, show status and logs, merge, chat."""
    from orchestrator.demo import run_demo

    run_demo(Path(workspace).resolve(), cluster_file, nproc_per_node, epochs, say=click.echo)
