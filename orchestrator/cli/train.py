"""`orch train | merge | self-cognition` (also `orch data self-cognition` when the data group exists)."""

from __future__ import annotations

import sys

import click

from orchestrator.cli.app import TRUST_REMOTE_CODE, cli


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--nproc-per-node", type=int, default=1, show_default=True, help="Processes on this machine.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False), help="Base model folder (overrides the config).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder that relative data files resolve against.")
@TRUST_REMOTE_CODE
def train(config: str, nproc_per_node: int, model_dir: str | None, data_dir: str | None,
          trust_remote_code: bool) -> None:
    """Train CONFIG on this machine under torchrun (the config is checked first; mistakes exit 2)."""
    from orchestrator.train.arguments import check_training_args
    from orchestrator.train.config import load_config

    from orchestrator.jobs.local_run import run_local

    check_training_args(load_config(config, model=model_dir, data_dir=data_dir, trust_remote_code=trust_remote_code))
    worker_args = [config]
    worker_args += ["--model", model_dir] if model_dir else []
    worker_args += ["--data-dir", data_dir] if data_dir else []
    worker_args += ["--trust-remote-code"] if trust_remote_code else []
    sys.exit(run_local(nproc_per_node, worker_args))


@cli.command()
@click.option("--adapter", required=True, type=click.Path(file_okay=False), help="LoRA/QLoRA adapter folder.")
@click.option("--base", type=click.Path(file_okay=False), help="Base model (default: from adapter_config.json).")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Where the merged model goes.")
@TRUST_REMOTE_CODE
def merge(adapter: str, base: str | None, output: str, trust_remote_code: bool) -> None:
    """Merge a LoRA/QLoRA adapter into its base: the result loads with AutoModelForCausalLM alone."""
    from orchestrator.train.merge import merge_adapter

    out = merge_adapter(adapter, output, base=base, trust_remote_code=trust_remote_code)
    click.echo(f"merged model written to {out}")


@click.command("self-cognition")
@click.option("--name", required=True, help="The model's name, as it should answer.")
@click.option("--author", required=True, help="Who made it.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="JSONL file to write.")
def self_cognition(name: str, author: str, output: str) -> None:
    """Write identity Q/A samples (Chinese and English) to mix into a fine-tuning set."""
    from orchestrator.train.self_cognition import write_self_cognition

    click.echo(f"wrote {write_self_cognition(name, author, output)} samples to {output}")


cli.add_command(self_cognition)
try:  # `orch data self-cognition` too, when the data command group exists
    from orchestrator.cli.data import data as _data_group
except ImportError:
    _data_group = None
if isinstance(_data_group, click.Group):
    _data_group.add_command(self_cognition)
