"""The root `orch` click group and the one place user errors become a message and exit code 2."""

from __future__ import annotations

import sys

import click

from orchestrator import __version__
from orchestrator.errors import OrchError


class OrchGroup(click.Group):
    """A click group that turns `OrchError` into `orch: error: ...` on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except OrchError as exc:
            click.echo(f"orch: error: {exc}", err=True)
            sys.exit(2)


# the commands that write only orch's own state ($ORCH_HOME: the job database, run folders, the local node's jobs):
# what they create is private (600/700); the others write the user's files (a merged model, data) with their umask
STATE_COMMANDS = frozenset({"launch", "restart", "_supervise", "status", "logs", "stop", "tb", "doctor"})


@click.group(cls=OrchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orch")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """orch: launch, watch and stop multi-node fine-tuning jobs over SSH, and the worker they run."""
    from orchestrator.train.quiet import quiet_third_party

    quiet_third_party()
    if ctx.invoked_subcommand in STATE_COMMANDS:
        from orchestrator.paths import private_files

        private_files()


TRUST_REMOTE_CODE = click.option(
    "--trust-remote-code", is_flag=True, default=False,
    help="Run the code a model/tokenizer folder ships (ChatGLM3, Qwen v1, FM9G); off: such a folder is refused.")
