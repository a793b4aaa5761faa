"""`orch train | merge | self-cognition` (also `orch data self-cognition` when the data group exists)."""

from __future__ import annotations

import sys

import click

from orchestrator.cli.app import TRUST_REMOTE_CODE, cli


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("words", nargs=-1, metavar="[DATA_DIR MODEL] CONFIG [DS_CONFIG.json] [yes|no|STEP]")
@click.option("--nproc-per-node", type=int, default=1, show_default=True, help="Processes on this machine.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False), help="Base model folder (overrides the config).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder that relative data files resolve against.")
@TRUST_REMOTE_CODE
def train(words: tuple[str, ...], nproc_per_node: int, model_dir: str | None, data_dir: str | None,
          trust_remote_code: bool) -> None:
    """Train CONFIG on this machine (one process here, several under torchrun; mistakes exit 2 in one line). ChatGLM3's
    `finetune_hf.py DATA_DIR MODEL CONFIG [yes|no|STEP]` order works too."""
    from orchestrator.cli.train_args import parse_train_args
    from orchestrator.errors import ConfigError
    from orchestrator.train.config import load_config

    from orchestrator.jobs.local_run import run_local

    args = parse_train_args(words)
    for flag, given, positional in (("--model", model_dir, args.model), ("--data-dir", data_dir, args.data_dir)):
        if given and positional and given != positional:
            raise ConfigError(f"{flag} {given} and the positional {positional} disagree; give one")
    model_dir, data_dir = model_dir or args.model, data_dir or args.data_dir
    # what needs transformers (training_args names, the model's own code) the worker checks as it starts: the
    # controller imports neither torch nor transformers for one process
    load_config(args.config, model=model_dir, data_dir=data_dir, trust_remote_code=trust_remote_code,
                deepspeed=args.deepspeed, resume=args.resume, stack_checks=False)
    worker_args = [args.config]
    for flag, value in (("--model", model_dir), ("--data-dir", data_dir), ("--deepspeed", args.deepspeed),
                        ("--resume", args.resume)):
        worker_args += [flag, value] if value else []
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
@click.option("--name", required=True, multiple=True,
              help="The model's name, as it should answer; twice for Chinese then English (--name 小黄 --name 'Xiao Huang').")
@click.option("--author", required=True, multiple=True, help="Who made it; twice for Chinese then English.")
@click.option("--num", "count", type=click.IntRange(min=1), default=None,
              help="How many samples (drawn with repeats; default: each template once).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="JSONL file to write.")
def self_cognition(name: tuple[str, ...], author: tuple[str, ...], count: int | None, seed: int, output: str) -> None:
    """Write identity Q/A samples (Chinese and English) to mix into a fine-tuning set (or set self_cognition: in
    the training config)."""
    from orchestrator.errors import ConfigError
    from orchestrator.train.self_cognition import write_self_cognition

    for flag, values in (("--name", name), ("--author", author)):
        if len(values) > 2:
            raise ConfigError(f"{flag}: give it once (both languages) or twice (Chinese, then English)")
    n = write_self_cognition(list(name), list(author), output, count, seed)
    click.echo(f"wrote {n} samples to {output}")


cli.add_command(self_cognition)
try:  # `orch data self-cognition` too, when the data command group exists
    from orchestrator.cli.data import data as _data_group
except ImportError:
    _data_group = None
if isinstance(_data_group, click.Group):
    _data_group.add_command(self_cognition)
