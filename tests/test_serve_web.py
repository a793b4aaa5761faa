"""The chat page in a real headless Chromium: type, send, watch the answer stream in, keep the conversation.

Chromium is driven over the DevTools protocol (tests/browser.py). A screenshot is kept under tests/artifacts/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, Browser
from tests.needs import missing, need_module

need_module("fastapi")
torch = need_module("torch")

ARTIFACTS = Path(__file__).parent / "artifacts"
NAME = "tiny-web"


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
