"""The chat page in a real headless Chromium: type, send, watch the answer stream in, keep the conversation.

Chromium is driven over the DevTools protocol on `--remote-debugging-pipe` (fds 3 and 4, NUL-separated JSON),
so no websocket package is needed. A screenshot is kept under tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.needs import missing, need_module

need_module("fastapi")
torch = need_module("torch")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).parent / "artifacts"
NAME = "tiny-web"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1000,700"]


class Browser:
    """A headless Chromium and one page in it, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_fds() -> None:  # the child reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=wire_fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, session: str | None = None, **params: object) -> dict:
        """Send one command and wait for its reply (events in between are skipped)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def page(self, method: str, **params: object) -> dict:
        """A command for the page's session."""
        return self.call(method, session=self.session, **params)

    def js(self, expression: str) -> object:
        """Evaluate `expression` in the page (awaiting promises) and return its value."""
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> object:
        """Poll `expression` until it is truthy (errors, e.g. while the page is still loading, count as no)."""
        deadline = time.monotonic() + timeout
        while not (value := self.js(f"(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()")):
            assert time.monotonic() < deadline, f"timed out waiting for: {expression}"
            time.sleep(0.05)
        return value

    def type_and_send(self, text: str) -> None:
        """Focus the message box, type like a keyboard would, press Enter."""
        self.js("document.getElementById('prompt').focus()")
        self.page("Input.insertText", text=text)
        for kind in ("keyDown", "keyUp"):
            self.page("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                      **({"text": "\r"} if kind == "keyDown" else {}))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


@pytest.fixture(scope="module")
def served(tiny_model: Path):
    """The server (no API key) and an `openai` client for computing what the page should show."""
    openai = need_module("openai")
    from orchestrator.serve.api import create_app
    from orchestrator.serve.generation import Engine
    from orchestrator.serve.loader import load_model
    from orchestrator.serve.server import ServerThread

    loaded = load_model(tiny_model)
    with ServerThread(create_app(Engine(loaded.model, loaded.tokenizer), NAME)) as running:
        yield running.url, openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)


def test_chat_page_streams_answers_and_keeps_the_conversation(served, tmp_path: Path) -> None:
    if CHROMIUM is None:
        missing("Debian's chromium is not installed (scripts/setup.sh installs it)")
    url, client = served
    browser = Browser(tmp_path / "profile")
    try:
        browser.page("Page.navigate", url=f"{url}/")
        browser.wait_for(f"document.getElementById('model').textContent === {json.dumps(NAME)}")
        browser.js("document.getElementById('temperature').value = '0';"
                   "document.getElementById('max-tokens').value = '24'")

        messages: list[dict] = []
        for turn, question in enumerate(["Hello there, who are you?", "你好！Tell me more."]):
            messages.append({"role": "user", "content": question})
            expected = client.chat.completions.create(model=NAME, messages=messages, max_tokens=24, temperature=0)
            answer = expected.choices[0].message.content
            browser.type_and_send(question)
            browser.wait_for(f"document.querySelectorAll('.msg.assistant[data-state=done]').length === {turn + 1}")
            shown = browser.js(
                "Array.from(document.querySelectorAll('.msg')).map(m => [m.className, m.textContent,"
                " Number(m.dataset.pieces || 0)])"
            )
            assert [s[0] for s in shown] == ["msg user", "msg assistant"] * (turn + 1)
            assert shown[-2][1] == question
            assert shown[-1][1] == answer, "the page shows what the API answers for the whole conversation"
            assert shown[-1][2] > 1, "the answer should arrive in several streamed pieces"
            meta = browser.js("Array.from(document.querySelectorAll('.meta')).pop().textContent")
            assert f"prompt {expected.usage.prompt_tokens}" in meta  # the second turn's prompt holds the first
            messages.append({"role": "assistant", "content": answer})
            assert browser.js("document.getElementById('prompt').value") == ""

        shot = browser.page("Page.captureScreenshot", format="png")["data"]
        ARTIFACTS.mkdir(exist_ok=True)
        import base64

        path = ARTIFACTS / "serve_chat_page.png"
        path.write_bytes(base64.b64decode(shot))
        assert path.stat().st_size > 1000
    finally:
        browser.close()
