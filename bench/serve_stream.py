"""Streaming through `orch serve` vs calling `model.generate` directly, in the same run, on the same model.

Builds a small random Llama from a config (hidden 256, 4 layers by default; nothing from a hub), starts
`orch serve` on it as a separate process (as a user would), and alternates rounds of:
  - server: a streaming chat completion through the real `openai` client, greedy, `max_tokens` = N;
  - direct: `model.generate` on the same templated prompt, greedy, `max_new_tokens` = N, in this process.
Greedy decoding makes both produce the same tokens, so tokens/s compare like for like. Time to first token is
the first content chunk for the server and the first token handed to a streamer for `generate`.
Prints medians and the ratio server/direct (target >= 0.9).

    python bench/serve_stream.py [--hidden 256] [--layers 4] [--tokens 128] [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTION = "Explain in a few sentences how distributed training averages gradients across GPUs."


def start_server(model_dir: Path, threads: int) -> tuple[subprocess.Popen, str]:
    """`orch serve MODEL --port 0` in its own process; returns it and its base URL once it answers."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", str(model_dir), "--port", "0",
                             "--model-name", "bench"], stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:
        if match := re.search(r"at (http://\S+)/v1", line):
            return proc, match.group(1)
    raise SystemExit(f"orch serve exited with {proc.wait()}")


def server_round(client, tokens: int) -> tuple[float, float, int]:
    """(seconds, seconds to first content, completion tokens) for one streamed answer."""
    start = time.perf_counter()
    first = None
    usage = None
    stream = client.chat.completions.create(
        model="bench", messages=[{"role": "user", "content": QUESTION}], max_tokens=tokens, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            usage = chunk.usage
    return time.perf_counter() - start, first or 0.0, usage.completion_tokens


def direct_round(model, input_ids, tokens: int) -> tuple[float, float, int]:
    """(seconds, seconds to first token, new tokens) for one `model.generate` call."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls = 0
            self.at: float | None = None

        def put(self, value) -> None:
            self.calls += 1
            if self.calls == 2:  # the first put is the prompt
                self.at = time.perf_counter()

        def end(self) -> None:
            pass

    streamer = FirstToken()
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=tokens,
                             do_sample=False, streamer=streamer)
    elapsed = time.perf_counter() - start
    return elapsed, (streamer.at or start) - start, out.shape[1] - input_ids.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides (1 keeps a shared 2-core machine's noise down)")
    args = parser.parse_args()

    import openai
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from orchestrator.train.tiny import build_tiny_model

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "model", hidden_size=args.hidden, num_layers=args.layers)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        text = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True,
                                             tokenize=False)
        input_ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        proc, url = start_server(model_dir, args.threads)
        try:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            server_round(client, 8)  # warm both paths
            direct_round(model, input_ids, 8)
            served, direct = [], []
            for _ in range(args.rounds):
                served.append(server_round(client, args.tokens))
                direct.append(direct_round(model, input_ids, args.tokens))
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def summary(rounds: list[tuple[float, float, int]]) -> tuple[float, float, int]:
        counts = {n for _, _, n in rounds}
        return statistics.median(n / t for t, _, n in rounds), statistics.median(f for _, f, _ in rounds), max(counts)

    s_rate, s_ttft, s_n = summary(served)
    d_rate, d_ttft, d_n = summary(direct)
    print(f"model: Llama hidden {args.hidden}, {args.layers} layers, prompt {input_ids.shape[1]} tokens, "
          f"torch threads {torch.get_num_threads()}, {args.rounds} rounds (medians)")
    print(f"{'':28}{'tokens/s':>10}{'TTFT ms':>10}{'tokens':>8}")
    print(f"{'server (stream, openai)':28}{s_rate:10.1f}{s_ttft * 1000:10.1f}{s_n:8d}")
    print(f"{'model.generate (direct)':28}{d_rate:10.1f}{d_ttft * 1000:10.1f}{d_n:8d}")
    ratio = s_rate / d_rate
    print(f"ratio server/direct tokens/s: {ratio:.3f} (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")


if __name__ == "__main__":
    main()
