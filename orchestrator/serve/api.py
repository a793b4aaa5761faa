"""The OpenAI-compatible HTTP API (FastAPI): `/v1/models`, `/v1/chat/completions` (plain and SSE) and the chat page.

Requests are parsed by hand from the raw body so that every mistake (bad JSON, wrong types, unknown model, a prompt
too long) becomes an OpenAI-style error object with a 4xx status; nothing reaches the client as a traceback.
Generation runs in worker threads; the engine's lock makes simultaneous requests queue for the model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from importlib import resources
from typing import Any, AsyncIterator

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.serve.errors import ContextLengthError
from orchestrator.serve.generation import Completion, Engine, SamplingParams
from orchestrator.serve import schemas

log = logging.getLogger("orch.serve")

_END = object()


class APIError(Exception):
    """An error to answer with `status` and an OpenAI error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = schemas.error_body(message, kind, param, code)


def _sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n"


def _params(req: schemas.ChatRequest, max_tokens: int) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        stop=req.stop_strings(),
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        seed=req.seed,
    )


def create_app(engine: Engine, model_name: str, api_key: str | None = None,
               default_max_tokens: int = 512) -> FastAPI:
    """Build the app serving `engine` under `model_name`; with `api_key`, /v1 routes require that bearer token."""
    app = FastAPI(title="orch serve", docs_url=None, redoc_url=None, openapi_url=None)
    started = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(schemas.error_body(str(exc.detail), kind), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(schemas.error_body(f"invalid request: {exc.errors()[0].get('msg')}"), status_code=400)

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse(schemas.error_body("internal server error", "server_error"), status_code=500)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        page = resources.files("orchestrator.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        check_key(request)
        return schemas.models_body(model_name, started)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_key(request)
        try:
            req = schemas.ChatRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            message, param = schemas.describe_validation_error(exc)
            raise APIError(400, message, param=param) from None
        if req.model != model_name:
            raise APIError(404, f"The model '{req.model}' does not exist; this server serves '{model_name}'",
                           param="model", code="model_not_found")
        prompt_ids = _prompt_ids(engine, req)
        try:
            budget = engine.budget(len(prompt_ids), req.requested_max_tokens(), default_max_tokens)
        except ContextLengthError as exc:
            param = "max_tokens" if len(prompt_ids) < engine.context_length else "messages"
            raise APIError(400, str(exc), param=param, code="context_length_exceeded") from None
        params = _params(req, budget)
        cid = schemas.new_completion_id()
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            events = _stream(engine, prompt_ids, params, cid, model_name, include_usage)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        done: Completion = await anyio.to_thread.run_sync(engine.generate, prompt_ids, params)
        return schemas.completion_body(cid, model_name, done.text, done.finish_reason,
                                       done.prompt_tokens, done.completion_tokens)

    return app


def _prompt_ids(engine: Engine, req: schemas.ChatRequest) -> list[int]:
    from jinja2 import TemplateError

    try:
        return engine.prompt_ids([m.as_template_input() for m in req.messages])
    except (TemplateError, ValueError) as exc:
        raise APIError(400, f"the model's chat template rejected these messages: {exc}", param="messages") from None


async def _stream(engine: Engine, prompt_ids: list[int], params: SamplingParams, cid: str, model: str,
                  include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: a role chunk, one chunk per text piece, a finish chunk, optional usage, `[DONE]`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    cancel = threading.Event()
    created = int(time.time())

    def on_text(piece: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, piece)

    task = asyncio.ensure_future(anyio.to_thread.run_sync(engine.generate, prompt_ids, params, on_text, cancel))
    task.add_done_callback(lambda _: queue.put_nowait(_END))

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, int] | None = None) -> str:
        return _sse(schemas.chunk_body(cid, model, created, delta, finish, usage, include_usage))

    try:
        yield chunk({"role": "assistant", "content": ""})
        while (item := await queue.get()) is not _END:
            yield chunk({"content": item})
        done: Completion = task.result()
        yield chunk({}, done.finish_reason)
        if include_usage:
            yield chunk(None, usage=schemas.usage(done.prompt_tokens, done.completion_tokens))
    except Exception:  # generation failed mid-stream: the status line is gone, so say it in the stream
        log.exception("generation failed")
        yield _sse(schemas.error_body("generation failed", "server_error"))
    finally:
        cancel.set()
    yield _sse("[DONE]")
