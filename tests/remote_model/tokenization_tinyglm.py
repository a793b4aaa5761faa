"""A slow (pure Python) ChatGLM3-shaped tokenizer for tests: characters, byte fallback, role tokens.

Loaded by transformers only with `trust_remote_code=True` (the model folder's `auto_map` points here), like
ChatGLM3's own SentencePiece tokenizer: it has no fast backend, `[gMASK]sop` as its prefix tokens and
`<|system|>`/`<|user|>`/`<|assistant|>`/`<|observation|>` role tokens, and a `build_chat_input` helper.
"""

import json
import os

from transformers import BatchEncoding, PreTrainedTokenizer

ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"]
PREFIX_TOKENS = ["[gMASK]", "sop"]


class TinyGLMTokenizer(PreTrainedTokenizer):
    """Character-level vocabulary with `<0xNN>` byte fallback for characters it has not seen."""

    vocab_files_names = {"vocab_file": "tinyglm_vocab.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file, **kwargs):
        with open(vocab_file, encoding="utf-8") as fh:
            self.vocab = json.load(fh)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        kwargs.setdefault("eos_token", "</s>")
        kwargs.setdefault("pad_token", "<pad>")
        kwargs.setdefault("unk_token", "<unk>")
        super().__init__(**kwargs)
        self.add_tokens(ROLE_TOKENS + PREFIX_TOKENS, special_tokens=True)

    @property
    def vocab_size(self):
        return len(self.vocab)

    def get_vocab(self):
        return {**self.vocab, **self.added_tokens_encoder}

    def _tokenize(self, text, **kwargs):
        pieces = []
        for ch in text:
            if ch in self.vocab:
                pieces.append(ch)
            else:
                pieces.extend(f"<0x{b:02X}>" for b in ch.encode("utf-8"))
        return pieces

    def _convert_token_to_id(self, token):
        return self.vocab.get(token, self.vocab["<unk>"])

    def _convert_id_to_token(self, index):
        return self.ids_to_tokens.get(index, "<unk>")

    def convert_tokens_to_string(self, tokens):
        out, pending = [], b""
        for tok in tokens:
            if len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
                pending += bytes([int(tok[3:5], 16)])
                continue
            if pending:
                out.append(pending.decode("utf-8", "replace"))
                pending = b""
            out.append(tok)
        if pending:
            out.append(pending.decode("utf-8", "replace"))
        return "".join(out)

    def save_vocabulary(self, save_directory, filename_prefix=None):
        name = (filename_prefix + "-" if filename_prefix else "") + "tinyglm_vocab.json"
        path = os.path.join(save_directory, name)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.vocab, fh, ensure_ascii=False)
        return (path,)

    def get_prefix_tokens(self):
        return self.convert_tokens_to_ids(PREFIX_TOKENS)

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        ids = self.get_prefix_tokens() + list(token_ids_0)
        return ids + list(token_ids_1) + [self.eos_token_id] if token_ids_1 is not None else ids

    def build_single_message(self, role, metadata, message):
        """`<|role|>metadata\\n` then the message, as ChatGLM3's tokenizer builds one turn."""
        head = [self.convert_tokens_to_ids(f"<|{role}|>")] + self.encode(f"{metadata}\n", add_special_tokens=False)
        return head + self.encode(message, add_special_tokens=False)

    def build_chat_input(self, query, history=None, role="user"):
        """Token ids of a whole conversation plus the assistant prompt (ChatGLM3's `build_chat_input`)."""
        ids = self.get_prefix_tokens()
        for turn in history or []:
            ids += self.build_single_message(turn["role"], turn.get("metadata", ""), turn["content"])
        ids += self.build_single_message(role, "", query)
        ids += [self.convert_tokens_to_ids("<|assistant|>")]
        return BatchEncoding({"input_ids": [ids], "attention_mask": [[1] * len(ids)]}, tensor_type="pt")
