"""A thread-safe generation engine on top of `model.generate`, streaming text pieces as they are decoded.

One lock serialises the model: concurrent callers queue and each gets exactly the answer it would get alone
(correctness first; a batching scheduler could replace the lock behind the same `generate` call). Streaming hooks
into `generate` through a stopping criterion, which sees every new token right after it is chosen: it decodes the
token, cuts at stop strings, hands the new text to `on_text`, and ends generation at a stop string or on `cancel`.

Usage follows the tokenizer exactly: `prompt_tokens` is the length of the templated prompt ids, and
`completion_tokens` the number of ids the model generated (an end-of-turn token included, as other servers count).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from orchestrator.serve.detok import IncrementalDecoder
from orchestrator.serve.errors import ContextLengthError
from orchestrator.serve.stops import StopMatcher

TextCallback = Callable[[str], None]


@dataclass(frozen=True)
class SamplingParams:
    """OpenAI-style sampling settings; `temperature == 0` (or `top_p == 0`) means greedy decoding."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        """Whether sampling collapses to argmax."""
        return self.temperature == 0 or self.top_p == 0


@dataclass(frozen=True)
class Completion:
    """One finished answer: its text, token counts and why it ended (`stop` or `length`)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def _penalty_processor(prompt_len: int, presence: float, frequency: float):
    """A logits processor applying OpenAI's presence/frequency penalties to tokens generated so far."""
    import torch
    from transformers import LogitsProcessor

    class _Penalties(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            generated = input_ids[:, prompt_len:]
            if generated.shape[1] == 0:
                return scores
            counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
            return scores - frequency * counts - presence * (counts > 0).to(scores.dtype)

    return _Penalties()


def _watcher(prompt_len: int, eos_ids: set[int], decoder: IncrementalDecoder, matcher: StopMatcher,
             on_text: TextCallback, cancel: threading.Event | None):
    """A stopping criterion that streams each new token's text and stops at a stop string or on cancel."""
    import torch
    from transformers import StoppingCriteria

    class _Watch(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            token = int(input_ids[0, -1])
            if input_ids.shape[1] > prompt_len and token not in eos_ids:
                piece = matcher.feed(decoder.push(token))
                if piece:
                    on_text(piece)
            done = matcher.stopped or (cancel is not None and cancel.is_set())
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return _Watch()


def _context_length(config: Any) -> int:
    """The model's context window: `max_position_embeddings`, or ChatGLM3's `seq_length`; else 2048."""
    for name in ("max_position_embeddings", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


class Engine:
    """Wraps a loaded model and tokenizer: chat templating, length checks and locked, streamed generation."""

    def __init__(self, model: Any, tokenizer: Any, context_length: int | None = None, template: Any = None) -> None:
        from orchestrator.train.data.prompting import answer_lead, turn_ends
        from orchestrator.train.data.templates import resolve_template

        self.model = model
        self.tokenizer = tokenizer
        self.context_length = context_length or _context_length(model.config)
        self.eos_ids = _eos_ids(model, tokenizer)
        # the chat format training used (loader.LoadedModel.template), else what `auto` picks for the tokenizer
        self.template = template if template is not None else resolve_template("auto", tokenizer)
        if self.template.name != "tokenizer":  # the tokens that end an assistant turn in that format stop answers
            self.eos_ids.update(turn_ends(tokenizer, self.template))
        self.answer_lead = answer_lead(self.template)  # ChatGLM3: the metadata line before the answer
        self._lock = threading.Lock()

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The token ids of `messages` in the chat format, ready for the assistant's turn: the tokenizer's own
        chat template, or a built-in/user-defined format laid out as training encoded it. ValueError (or a
        jinja2 TemplateError) for messages the format cannot lay out."""
        from orchestrator.train.data.encoding import plain_ids
        from orchestrator.train.data.prompting import generation_prompt

        if self.template.name == "tokenizer":
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return plain_ids(self.tokenizer, text)
        return generation_prompt(messages, self.tokenizer, self.template)

    def budget(self, prompt_len: int, max_tokens: int | None, default: int) -> int:
        """The number of new tokens to allow; raises `ContextLengthError` when the request cannot fit."""
        room = self.context_length - prompt_len
        if room <= 0:
            raise ContextLengthError(
                f"the prompt has {prompt_len} tokens but this model's context length is {self.context_length}"
            )
        if max_tokens is None:
            return min(default, room)
        if max_tokens > room:
            raise ContextLengthError(
                f"this model's context length is {self.context_length} tokens; the prompt has {prompt_len} "
                f"and max_tokens asks for {max_tokens} more"
            )
        return max_tokens

    def generate(self, prompt_ids: list[int], params: SamplingParams, on_text: TextCallback | None = None,
                 cancel: threading.Event | None = None) -> Completion:
        """Generate one answer (blocking; waits for the model's lock), calling `on_text` with each new piece."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        pieces: list[str] = []
        pad = self.tokenizer.pad_token_id
        lead = self.answer_lead  # what the model writes before its answer (ChatGLM3: "\n")

        def emit(piece: str) -> None:
            nonlocal lead
            if lead:
                cut = 0
                while cut < min(len(piece), len(lead)) and piece[cut] == lead[cut]:
                    cut += 1
                lead = lead[cut:] if cut == len(piece) else ""
                piece = piece[cut:]
            if not piece:
                return
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)

        decoder = IncrementalDecoder(self.tokenizer)
        matcher = StopMatcher(params.stop)
        prompt_len = len(prompt_ids)
        config = GenerationConfig(
            max_new_tokens=params.max_tokens,
            do_sample=not params.greedy,
            temperature=None if params.greedy else params.temperature,
            top_p=None if params.greedy else params.top_p,
            top_k=None if params.greedy else 0,
            eos_token_id=sorted(self.eos_ids) or None,
            pad_token_id=pad if pad is not None else min(self.eos_ids, default=0),
        )
        processors = LogitsProcessorList()
        if params.presence_penalty or params.frequency_penalty:
            processors.append(_penalty_processor(prompt_len, params.presence_penalty, params.frequency_penalty))
        criteria = StoppingCriteriaList([_watcher(prompt_len, self.eos_ids, decoder, matcher, emit, cancel)])
        device = self.model.device
        input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        with self._lock, torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=criteria,
            )
        generated = output[0, prompt_len:].tolist()
        tail = matcher.feed(decoder.flush())
        tail += matcher.flush()
        if tail:
            emit(tail)
        ended = matcher.stopped or (bool(generated) and generated[-1] in self.eos_ids)
        return Completion(
            text="".join(pieces),
            prompt_tokens=prompt_len,
            completion_tokens=len(generated),
            finish_reason="stop" if ended else "length",
        )
