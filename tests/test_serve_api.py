"""The OpenAI-compatible server, driven by the real `openai` client (and raw HTTP for malformed requests).

Expected answers come from the model itself: `model.generate` called directly with greedy decoding (or, for the
penalty, a plain argmax loop written here), and token counts from the tokenizer, never from the server's code.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.needs import need_module

openai = need_module("openai")
need_module("fastapi")
torch = need_module("torch")

KEY = "sk-test-key"
NAME = "tiny-chat"


@pytest.fixture(scope="module")
def reference(tiny_model: Path):
    """The tiny model and tokenizer loaded straight through transformers, as a user's own script would."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def server(tiny_model: Path):
    """`orch serve`'s app on a free local port, requiring KEY."""
    from orchestrator.serve.api import create_app
    from orchestrator.serve.generation import Engine
    from orchestrator.serve.loader import load_model
    from orchestrator.serve.server import ServerThread

    loaded = load_model(tiny_model)
    app = create_app(Engine(loaded.model, loaded.tokenizer), NAME, api_key=KEY, default_max_tokens=32)
    with ServerThread(app) as running:
        yield running.url


@pytest.fixture(scope="module")
def client(server: str):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=120)


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def greedy(reference, messages: list[dict], max_new_tokens: int) -> tuple[str, int, int]:
    """(text, prompt_tokens, completion_tokens) from `model.generate` with greedy decoding."""
    model, tokenizer = reference
    ids = prompt_ids(tokenizer, messages)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0, len(ids):].tolist()
    return tokenizer.decode(new, skip_special_tokens=True), len(ids), len(new)


def ask(client, content: str, **kwargs):
    return client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": content}], **kwargs)


def test_lists_the_served_model(client) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [NAME]


def test_non_streaming_answer_and_usage_match_the_model(client, reference) -> None:
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "你好, what is LoRA?"}]
    text, n_prompt, n_new = greedy(reference, messages, 20)
    reply = client.chat.completions.create(model=NAME, messages=messages, max_tokens=20, temperature=0)
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == text
    assert reply.usage.prompt_tokens == n_prompt
    assert reply.usage.completion_tokens == n_new
    assert reply.usage.total_tokens == n_prompt + n_new
    assert reply.choices[0].finish_reason == ("length" if n_new == 20 else "stop")
    assert reply.id.startswith("chatcmpl-") and reply.model == NAME


def test_streaming_arrives_in_pieces_and_adds_up(client, reference) -> None:
    messages = [{"role": "user", "content": "Tell me about Paris."}]
    text, n_prompt, n_new = greedy(reference, messages, 24)
    stream = client.chat.completions.create(
        model=NAME, messages=messages, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3, "the answer should arrive in several chunks"
    assert "".join(pieces) == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length" if n_new == 24 else "stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == n_prompt
    assert chunks[-1].usage.completion_tokens == n_new
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)


def test_raw_event_stream_ends_with_done(server) -> None:
    import httpx

    body = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body,
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_max_tokens_is_honoured(client) -> None:
    reply = ask(client, "Count to one hundred.", max_tokens=5, temperature=0)
    assert reply.usage.completion_tokens <= 5
    if reply.choices[0].finish_reason == "length":
        assert reply.usage.completion_tokens == 5


def test_stop_string_cuts_the_answer(client, reference) -> None:
    full, _, _ = greedy(reference, [{"role": "user", "content": "Say something long."}], 30)
    visible = full.replace("\ufffd", "")
    assert len(visible) > 12, f"need a longer greedy answer to pick a stop string from: {full!r}"
    stop = visible[6:9]
    expected = full[: full.find(stop)]
    for stream in (False, True):
        reply = ask(client, "Say something long.", max_tokens=30, temperature=0, stop=[stop, "never-appears"],
                    stream=stream)
        if stream:
            chunks = list(reply)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        else:
            text, finish = reply.choices[0].message.content, [reply.choices[0].finish_reason]
        assert text == expected and stop not in text
        assert finish == ["stop"]


def test_presence_penalty_matches_a_plain_argmax_loop(client, reference) -> None:
    model, tokenizer = reference
    messages = [{"role": "user", "content": "Repeat after me: the the the"}]
    ids = prompt_ids(tokenizer, messages)
    generated: list[int] = []
    with torch.no_grad():
        for _ in range(16):
            logits = model(torch.tensor([ids + generated])).logits[0, -1]
            if generated:
                logits[sorted(set(generated))] -= 2.0
            token = int(logits.argmax())
            generated.append(token)
            if token == tokenizer.eos_token_id:
                break
    expected = tokenizer.decode(generated, skip_special_tokens=True)
    reply = client.chat.completions.create(model=NAME, messages=messages, max_tokens=16, temperature=0,
                                           presence_penalty=2.0)
    assert reply.choices[0].message.content == expected
    plain, _, _ = greedy(reference, messages, 16)
    assert expected != plain, "the penalty should change this greedy answer"


def test_sampling_with_a_seed_is_repeatable(client) -> None:
    kwargs = dict(max_tokens=12, temperature=1.2, top_p=0.9, seed=7)
    first = ask(client, "Pick random words.", **kwargs).choices[0].message.content
    again = ask(client, "Pick random words.", **kwargs).choices[0].message.content
    assert first == again


def test_eight_simultaneous_requests_each_get_their_own_answer(client, reference) -> None:
    questions = [f"Question number {i}: {'你好' * i} what is {i} + {i}?" for i in range(8)]
    expected = [greedy(reference, [{"role": "user", "content": q}], 12)[0] for q in questions]
    assert len(set(expected)) > 1
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(questions))

    def worker(i: int) -> None:
        try:
            barrier.wait()
            if i % 2:
                stream = ask(client, questions[i], max_tokens=12, temperature=0, stream=True)
                results[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            else:
                results[i] = ask(client, questions[i], max_tokens=12, temperature=0).choices[0].message.content
        except BaseException as exc:  # surfaced below with the request that failed
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert [results.get(i) for i in range(len(questions))] == expected


def test_a_client_that_leaves_mid_stream_frees_the_model(client, server) -> None:
    import httpx

    body = {"model": NAME, "messages": [{"role": "user", "content": "go on forever"}], "max_tokens": 2000,
            "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body,
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as resp:
        lines = resp.iter_lines()
        assert next(lines).startswith("data: ")
    started = time.monotonic()
    reply = ask(client, "hi", max_tokens=2, temperature=0)
    assert reply.usage.completion_tokens <= 2
    # 2000 tokens take several seconds here; an abandoned stream must not hold the model that long
    assert time.monotonic() - started < 3


def test_wrong_or_missing_api_key_is_401(server) -> None:
    import httpx

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions")):
            resp = httpx.request(method, f"{server}{path}", headers=headers, timeout=30,
                                  json={"model": NAME, "messages": [{"role": "user", "content": "x"}]})
            assert resp.status_code == 401
            assert resp.json()["error"]["code"] == "invalid_api_key"
    bad = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


GOOD = {"model": NAME, "messages": [{"role": "user", "content": "hello"}]}


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[]", 400, None),
        (json.dumps({"model": NAME}).encode(), 400, "messages"),
        (json.dumps({**GOOD, "messages": []}).encode(), 400, "messages"),
        (json.dumps({**GOOD, "messages": "hello"}).encode(), 400, "messages"),
        (json.dumps({**GOOD, "messages": [{"role": "robot", "content": "x"}]}).encode(), 400, "messages.0.role"),
        (json.dumps({**GOOD, "messages": [{"role": "user", "content": 5}]}).encode(), 400, "messages.0.content"),
        (json.dumps({**GOOD, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).encode(), 400,
         "messages.0.content"),
        (json.dumps({**GOOD, "temperature": "hot"}).encode(), 400, "temperature"),
        (json.dumps({**GOOD, "temperature": 3}).encode(), 400, "temperature"),
        (json.dumps({**GOOD, "max_tokens": 0}).encode(), 400, "max_tokens"),
        (json.dumps({**GOOD, "stream": "yes"}).encode(), 400, "stream"),
        (json.dumps({**GOOD, "n": 2}).encode(), 400, "n"),
        (json.dumps({**GOOD, "stop": ["a", "b", "c", "d", "e"]}).encode(), 400, "stop"),
        (json.dumps({**GOOD, "model": "gpt-4o"}).encode(), 404, "model"),
        (json.dumps({**GOOD, "max_tokens": 5000}).encode(), 400, "max_tokens"),
        (json.dumps({**GOOD, "messages": [{"role": "user", "content": "hello world " * 1500}]}).encode(), 400,
         "messages"),
    ],
)
def test_bad_requests_get_openai_style_4xx_errors(server, body: bytes, status: int, param: str | None) -> None:
    import httpx

    resp = httpx.post(f"{server}/v1/chat/completions", content=body, timeout=30,
                       headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert "Traceback" not in resp.text


def test_too_long_prompt_is_reported_by_the_client_as_bad_request(client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, "hello world " * 1500)
    assert "context length" in str(info.value)


def test_unknown_route_is_a_json_404(server) -> None:
    import httpx

    resp = httpx.get(f"{server}/v1/nothing-here", timeout=30)
    assert resp.status_code == 404 and "error" in resp.json()
