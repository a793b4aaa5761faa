"""The root `orch` click group and the one place user errors become a message and exit code 2."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from orchestrator import __version__
from orchestrator.errors import OrchError


def _one_line(message: str, code: int = 2) -> NoReturn:
    """`orch: error: MESSAGE` on stderr, then exit (an `OrchError`'s message is one line already: errors.py)."""
    click.echo(f"orch: error: {message}", err=True)
    sys.exit(code)


def _usage(exc: click.ClickException) -> NoReturn:
    """A command-line mistake (unknown option, bad value) in one line, pointing at the command's --help; a group
    called with nothing shows its help, as click does."""
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        exc.show()
        sys.exit(exc.exit_code)
    ctx = getattr(exc, "ctx", None)
    hint = f" (see {ctx.command_path} --help)" if isinstance(exc, click.UsageError) and ctx is not None else ""
    _one_line(str(OrchError(f"{exc.format_message()}{hint}")), exc.exit_code)  # one line, as OrchError's


class OrchGroup(click.Group):
    """A click group that turns `OrchError`, click's usage errors and an unreadable/unwritable named file into one
    line `orch: error: ...` on stderr and exit code 2."""

    def make_context(self, *args, **kwargs) -> click.Context:  # noqa: D102 - the top level's own options
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as exc:
            _usage(exc)

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except OrchError as exc:
            _one_line(str(exc))
        except click.ClickException as exc:
            _usage(exc)
        except OSError as exc:
            if exc.filename is None or isinstance(exc, (BrokenPipeError, ConnectionError)):
                raise
            _one_line(f"{exc.filename}: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - a failure inside a model folder's own code: one line last
            from orchestrator.train.code_errors import model_code_failure, print_traceback

            line = model_code_failure(exc)
            if line is None:
                raise
            print_traceback(exc)
            click.echo(f"orch: error: {line}", err=True)
            sys.exit(1)


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
