"""Tokenizer code shipped inside the test model folder, behaving as Qwen-7B-Chat v1's does (checked against its
tokenization_qwen.py): a tiktoken BPE over a `bytes` vocabulary, `get_vocab()` with `bytes` keys, special tokens
that live outside the vocabulary, no eos, pad, bos or unk token (the end-of-document id is `eod_id`), tokens that
cannot be added, and special-token text in the input encoded as the special token."""

import base64
import unicodedata

import tiktoken
from transformers import AddedToken, PreTrainedTokenizer

VOCAB_FILES_NAMES = {"vocab_file": "tinyqwen.tiktoken"}
SPLIT_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                 r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
END_OF_DOCUMENT, CHAT_START, CHAT_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIALS = (END_OF_DOCUMENT, CHAT_START, CHAT_END) + tuple(f"<|extra_{i}|>" for i in range(8))


def read_ranks(path):
    """`base64-token rank` lines -> {token bytes: rank}."""
    with open(path, "rb") as fh:
        return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in fh if line.strip())}


class TinyQwenTokenizer(PreTrainedTokenizer):
    vocab_files_names = VOCAB_FILES_NAMES

    def __init__(self, vocab_file, errors="replace", **kwargs):
        super().__init__(**kwargs)
        self.vocab_file = vocab_file
        self.errors = errors
        self.ranks = read_ranks(vocab_file)
        self.specials = {token: i for i, token in enumerate(SPECIALS, start=len(self.ranks))}
        self._build()

    def _build(self):
        self.encoding = tiktoken.Encoding("tinyqwen", pat_str=SPLIT_PATTERN, mergeable_ranks=self.ranks,
                                          special_tokens=self.specials)
        self.id_to_token = {i: t for t, i in self.ranks.items()}
        self.id_to_token.update({i: t for t, i in self.specials.items()})
        self.eod_id = self.encoding.eot_token
        self.im_start_id = self.specials[CHAT_START]
        self.im_end_id = self.specials[CHAT_END]

    def __getstate__(self):  # a tiktoken Encoding does not pickle
        state = self.__dict__.copy()
        del state["encoding"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build()

    def __len__(self):
        return self.encoding.n_vocab

    @property
    def vocab_size(self):
        return self.encoding.n_vocab

    def get_vocab(self):
        return self.ranks

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, (str, bytes)):
            return self.specials[tokens] if tokens in self.specials else self.ranks.get(tokens)
        return [self.specials[t] if t in self.specials else self.ranks.get(t) for t in tokens]

    def _add_tokens(self, new_tokens, special_tokens=False):
        if not special_tokens and new_tokens:
            raise ValueError("Adding regular tokens is not supported")
        for token in new_tokens:
            text = token.content if isinstance(token, AddedToken) else token
            if text not in SPECIALS:  # the module's list: this runs inside super().__init__ too
                raise ValueError("Adding unknown special tokens is not supported")
        return 0

    def save_vocabulary(self, save_directory, filename_prefix=None):
        import os

        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "tinyqwen.tiktoken")
        with open(path, "w", encoding="utf-8") as out:
            for token, rank in self.ranks.items():
                out.write(base64.b64encode(token).decode("utf-8") + " " + str(rank) + "\n")
        return (path,)

    def tokenize(self, text, allowed_special="all", disallowed_special=(), **kwargs):
        text = unicodedata.normalize("NFC", text)
        ids = self.encoding.encode(text, allowed_special=allowed_special, disallowed_special=disallowed_special)
        return [self.id_to_token[i] for i in ids]

    def convert_tokens_to_string(self, tokens):
        data = b"".join(t if isinstance(t, bytes) else t.encode("utf-8") for t in tokens)
        return data.decode("utf-8", errors=self.errors)

    def _convert_id_to_token(self, index):
        if index in self.id_to_token:
            return self.id_to_token[index]
        raise ValueError("unknown ids")

    def _convert_token_to_id(self, token):
        if token in self.specials:
            return self.specials[token]
        if token in self.ranks:
            return self.ranks[token]
        raise ValueError("unknown token")

    def _tokenize(self, text, **kwargs):
        raise NotImplementedError

    def _decode(self, token_ids, skip_special_tokens=False, errors=None, **kwargs):
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        if skip_special_tokens:
            token_ids = [i for i in token_ids if i < self.eod_id]
        return self.encoding.decode(token_ids, errors=errors or self.errors)
