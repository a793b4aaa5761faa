"""The dashboard's HTTP server (stdlib `http.server`, one thread per request): pages, JSON API, log events,
actions. Routes:

    GET  /                         recent jobs            GET /api/jobs              the same, JSON
    GET  /jobs/<id>                one job                GET /api/jobs/<id>         status --json + metrics
    GET  /api/jobs/<id>/logs?node= log lines (SSE)        POST /api/jobs/<id>/stop | /restart {"exclude": node}
"""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from orchestrator.dashboard import actions, auth, logstream, views
from orchestrator.errors import OrchError
from orchestrator.jobs.store import Store

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": "index.html"}
ASSETS = {"/static/app.js": ("app.js", "text/javascript"), "/static/style.css": ("style.css", "text/css")}
JOB_PAGE = re.compile(r"^/jobs/([\w.-]+)$")
JOB_API = re.compile(r"^/api/jobs/([\w.-]+)(?:/(logs|stop|restart))?$")


class Handler(BaseHTTPRequestHandler):
    """Routes one request; `server.token` and `server.public` decide what needs the token."""

    server: "Dashboard"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet: the terminal shows the URL, not every GET
        return

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: object) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _refused(self, status: int) -> None:
        self._json(status, {"error": "a valid token is needed (the URL `orch dashboard` printed)"
                            if status in (401, 403) else "refused"})

    def _token_given(self) -> str | None:
        return self.headers.get(auth.HEADER) or self._query().get("token")

    def _foreign_host(self) -> bool:
        """On loopback, a request naming another host is a DNS-rebinding page: refused."""
        return not self.server.public and not auth.loopback_name(self.headers.get("Host"))

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if self._foreign_host():
            return self._refused(403)
        if self.server.public and path not in ASSETS:
            refusal = auth.check(self.server.token, self._token_given())
            if refusal:
                return self._refused(refusal)
        try:
            if path in PAGES or JOB_PAGE.match(path):
                return self._send(200, (STATIC / PAGES.get(path, "job.html")).read_bytes(), "text/html; charset=utf-8")
            if path in ASSETS:
                name, kind = ASSETS[path]
                return self._send(200, (STATIC / name).read_bytes(), kind)
            if path == "/api/jobs":
                return self._json(200, views.jobs(self.server.store))
            match = JOB_API.match(path)
            if match and match.group(2) is None:
                return self._json(200, views.detail(self.server.store, match.group(1)))
            if match and match.group(2) == "logs":
                return self._stream_logs(match.group(1), self._query().get("node"))
        except OrchError as exc:
            return self._json(404, {"error": str(exc)})
        self._json(404, {"error": f"no page {path}"})

    def do_POST(self) -> None:  # noqa: N802
        match = JOB_API.match(urlsplit(self.path).path)
        if not match or match.group(2) not in ("stop", "restart"):
            return self._json(404, {"error": "no such action"})
        if self._foreign_host() or not auth.same_origin(self.headers.get("Origin"), self.headers.get("Host")):
            return self._refused(403)
        refusal = auth.check(self.server.token, self.headers.get(auth.HEADER))  # a header: no form can send it
        if refusal:
            return self._refused(refusal)
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length)) if length else {}
            job = self.server.store.get(match.group(1))
            if match.group(2) == "stop":
                return self._json(200, actions.stop(job.id))
            return self._json(200, actions.restart(job.id, (body or {}).get("exclude") or None))
        except (OrchError, ValueError) as exc:
            return self._json(400, {"error": str(exc)})

    def _stream_logs(self, job_id: str, node: str | None) -> None:
        self.server.store.get(job_id)  # an unknown job is a 404 before the stream starts
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for line in logstream.lines(self.server.store, job_id, node):
                self.wfile.write(b"data: " + line.encode() + b"\n\n" if line else b": idle\n\n")
                self.wfile.flush()
            self.wfile.write(b"event: end\ndata: \n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return


class Dashboard(ThreadingHTTPServer):
    """The server and what every request needs."""

    daemon_threads = True

    def __init__(self, host: str, port: int, store: Store, token: str):
        super().__init__((host, port), Handler)
        self.store, self.token, self.public = store, token, not auth.is_loopback(host)


def make(host: str, port: int, store: Store | None = None, token: str | None = None) -> Dashboard:
    return Dashboard(host, port, store or Store(), token or auth.new_token())

