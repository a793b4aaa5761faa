"""`orch dashboard`: the local web app over the job store."""

from __future__ import annotations

import click

from orchestrator.cli.app import cli


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; any non-loopback one requires the token for every page.")
@click.option("--port", default=8265, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free).")
def dashboard(host: str, port: int) -> None:
    """Jobs, per-rank grid, curves, live logs and stop/restart in a browser (no job needs it running)."""
    from orchestrator.dashboard.server import make
    from orchestrator.errors import OrchError

    try:
        server = make(host, port)
    except OSError as exc:
        raise OrchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"orch dashboard: http://{shown}:{server.server_address[1]}/?token={server.token}", err=False)
    click.echo("(the token in this URL is needed for stop/restart"
               + ("; and for every page on this address)" if server.public else ")"), err=True)
    try:
        server.serve_forever(poll_interval=1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
