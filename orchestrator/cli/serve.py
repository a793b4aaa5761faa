"""`orch chat` and `orch serve`: talk to a trained model in the terminal, or serve it over the OpenAI API.

torch, transformers and fastapi are imported inside the commands: the controller install has none of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from orchestrator.cli.app import TRUST_REMOTE_CODE, cli

_MODEL = click.argument("model", type=click.Path(path_type=Path))
_BASE = click.option("--base", type=click.Path(path_type=Path), default=None,
                     help="Base model folder for an adapter whose recorded base moved.")


def _engine(model: Path, base: Path | None, trust_remote_code: bool):
    """Load the model (quietly) and wrap it in a generation engine."""
    from orchestrator.serve.errors import ServeError
    from orchestrator.serve.loader import resolve_source

    resolve_source(model, base)  # a wrong path fails before the slow imports
    try:
        from transformers.utils import logging as hf_logging

        from orchestrator.serve.generation import Engine
        from orchestrator.serve.loader import load_model
    except ImportError as exc:
        raise ServeError(
            f"serving needs torch and transformers ({exc.name} is missing): pip install 'orchestrator[train,serve]'"
        ) from None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    loaded = load_model(model, base, trust_remote_code=trust_remote_code)
    return Engine(loaded.model, loaded.tokenizer, template=loaded.template)


@cli.command("chat")
@_MODEL
@_BASE
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=512, show_default=True,
              help="Longest answer, in tokens.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True,
              help="0 means greedy (deterministic) decoding.")
@click.option("--top-p", type=click.FloatRange(0, 1), default=0.9, show_default=True)
@click.option("--system", default=None, help="A system message to start the conversation with.")
@TRUST_REMOTE_CODE
def chat_command(model: Path, base: Path | None, max_new_tokens: int, temperature: float, top_p: float,
                 system: str | None, trust_remote_code: bool) -> None:
    """Chat with MODEL (a model, merged model or adapter folder) in the terminal; stdin may be piped."""
    from orchestrator.serve.chat import chat_loop
    from orchestrator.serve.generation import SamplingParams

    engine = _engine(model, base, trust_remote_code)
    params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    chat_loop(engine, params, sys.stdin, sys.stdout, interactive=sys.stdin.isatty(), system=system)


@cli.command("serve")
@_MODEL
@_BASE
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--model-name", default=None, help="The model id clients send [default: the folder's name].")
@click.option("--api-key", default=None, envvar="ORCH_API_KEY",
              help="Require 'Authorization: Bearer KEY' on /v1 requests (or set $ORCH_API_KEY).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=512, show_default=True,
              help="Answer length when a request sets no max_tokens.")
@TRUST_REMOTE_CODE
def serve_command(model: Path, base: Path | None, host: str, port: int, model_name: str | None,
                  api_key: str | None, max_new_tokens: int, trust_remote_code: bool) -> None:
    """Serve MODEL over an OpenAI-compatible API, with a chat page at /."""
    from orchestrator.serve.errors import ServeError
    from orchestrator.serve.server import bind, serve_forever, url_of

    sock = bind(host, port)  # before loading: a taken port fails fast
    engine = _engine(model, base, trust_remote_code)
    try:
        from orchestrator.serve.api import create_app
    except ImportError as exc:
        raise ServeError(
            f"serving needs fastapi and uvicorn ({exc.name} is missing): pip install 'orchestrator[serve]'"
        ) from None
    name = model_name or model.resolve().name
    app = create_app(engine, name, api_key=api_key, default_max_tokens=max_new_tokens)
    url = url_of(sock)
    click.echo(f"serving '{name}' at {url}/v1 (chat page: {url}/)", err=True)
    sys.stderr.flush()
    serve_forever(app, sock)
