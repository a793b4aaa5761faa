"""A SentencePiece tokenizer that behaves as ChatGLM3's own (written here, checked against its behaviour).

What it reproduces, because orch has to live with it:
- pads on the left only: `_pad` asserts `padding_side == "left"` (so `padding_side = "right"` breaks every encode
  that pads or returns an attention mask), and its `_pad` takes no `padding_side` keyword (transformers >= 4.45
  passes one, and it fails there);
- `eos_token`, `pad_token`, `unk_token` and their ids are read-only properties (pad = unk = id 0, eos = id 2):
  a tokenizer saved by `save_pretrained` writes them into tokenizer_config.json and then cannot load again;
- `[MASK] [gMASK] [sMASK] sop eop` and the role tokens `<|system|> <|user|> <|assistant|> <|observation|>` sit
  after the SentencePiece vocabulary; text is never split at role tokens (`encode_special_tokens` off);
- `position_ids` is a model input; no chat_template; `build_single_message` / `build_chat_input` /
  `get_command` as ChatGLM3's finetune and chat code call them.
"""

import os
import re

from sentencepiece import SentencePieceProcessor
from transformers import PreTrainedTokenizer
from transformers.utils import PaddingStrategy

ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"]
EXTRA_TOKENS = ["[MASK]", "[gMASK]", "[sMASK]", "sop", "eop", *ROLE_TOKENS]


class TinyGLMTokenizer(PreTrainedTokenizer):
    """SentencePiece pieces, then the GLM command tokens; left padding only."""

    vocab_files_names = {"vocab_file": "tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask", "position_ids"]

    def __init__(self, vocab_file, padding_side="left", clean_up_tokenization_spaces=False,
                 encode_special_tokens=False, **kwargs):
        self.vocab_file = vocab_file
        self.sp = SentencePieceProcessor(model_file=vocab_file)
        base = self.sp.vocab_size()
        self.commands = {tok: base + i for i, tok in enumerate(EXTRA_TOKENS)}
        self.command_of_id = {i: tok for tok, i in self.commands.items()}
        self.ids = {"<bos>": self.sp.bos_id(), "<eos>": self.sp.eos_id(), "<pad>": self.sp.unk_id()}
        self.encode_special_tokens = encode_special_tokens
        self.role_pattern = "|".join(re.escape(t) for t in ROLE_TOKENS)
        super().__init__(padding_side=padding_side, clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                         encode_special_tokens=encode_special_tokens, **kwargs)

    def get_command(self, token):
        if token in self.ids:
            return self.ids[token]
        assert token in self.commands, f"{token} is not a command token"
        return self.commands[token]

    @property
    def unk_token(self) -> str:
        return "<unk>"

    @property
    def pad_token(self) -> str:
        return "<unk>"

    @property
    def pad_token_id(self):
        return self.get_command("<pad>")

    @property
    def eos_token(self) -> str:
        return "</s>"

    @property
    def eos_token_id(self):
        return self.get_command("<eos>")

    @property
    def vocab_size(self):
        return self.sp.vocab_size() + len(self.commands)

    def get_vocab(self):
        vocab = {self._convert_id_to_token(i): i for i in range(self.vocab_size)}
        vocab.update(self.added_tokens_encoder)
        return vocab

    def _tokenize(self, text, **kwargs):
        if not self.encode_special_tokens:
            return self.sp.encode_as_pieces(text)
        pieces, start = [], 0
        for found in re.finditer(self.role_pattern, text):
            pieces += self.sp.encode_as_pieces(text[start:found.start()]) if start < found.start() else []
            pieces.append(found.group())
            start = found.end()
        return pieces + (self.sp.encode_as_pieces(text[start:]) if start < len(text) else [])

    def _convert_token_to_id(self, token):
        return self.commands[token] if token in self.commands else self.sp.piece_to_id(token)

    def _convert_id_to_token(self, index):
        if index in self.command_of_id:
            return self.command_of_id[index]
        if index in self.ids.values() or index < 0 or index > self.sp.vocab_size():
            return ""
        return self.sp.id_to_piece(index)

    def convert_tokens_to_string(self, tokens):
        return self.sp.decode_pieces(tokens)

    def _sp_ids(self, text):
        return self.sp.encode(text)

    def save_vocabulary(self, save_directory, filename_prefix=None):
        target = os.path.join(save_directory, "tokenizer.model") if os.path.isdir(save_directory) else save_directory
        with open(self.vocab_file, "rb") as src, open(target, "wb") as dst:
            dst.write(src.read())
        return (target,)

    def get_prefix_tokens(self):
        return [self.get_command("[gMASK]"), self.get_command("sop")]

    def build_single_message(self, role, metadata, message):
        assert role in ("system", "user", "assistant", "observation"), role
        return [self.get_command(f"<|{role}|>")] + self._sp_ids(f"{metadata}\n") + self._sp_ids(message)

    def build_chat_input(self, query, history=None, role="user"):
        ids = []
        for turn in history or []:
            ids += self.build_single_message(turn["role"], turn.get("metadata", ""), turn["content"])
        ids += self.build_single_message(role, "", query) + [self.get_command("<|assistant|>")]
        return self.batch_encode_plus([ids], return_tensors="pt", is_split_into_words=True)

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        ids = self.get_prefix_tokens() + token_ids_0
        return ids if token_ids_1 is None else ids + token_ids_1 + [self.get_command("<eos>")]

    def _pad(self, encoded_inputs, max_length=None, padding_strategy=PaddingStrategy.DO_NOT_PAD,
             pad_to_multiple_of=None, return_attention_mask=None) -> dict:
        assert self.padding_side == "left"
        ids = encoded_inputs[self.model_input_names[0]]
        if padding_strategy == PaddingStrategy.LONGEST:
            max_length = len(ids)
        if max_length is not None and pad_to_multiple_of is not None and max_length % pad_to_multiple_of:
            max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
        encoded_inputs.setdefault("attention_mask", [1] * len(ids))
        encoded_inputs.setdefault("position_ids", list(range(len(ids))))
        if padding_strategy != PaddingStrategy.DO_NOT_PAD and len(ids) != max_length:
            gap = max_length - len(ids)
            encoded_inputs["attention_mask"] = [0] * gap + encoded_inputs["attention_mask"]
            encoded_inputs["position_ids"] = [0] * gap + encoded_inputs["position_ids"]
            encoded_inputs[self.model_input_names[0]] = [self.pad_token_id] * gap + ids
        return encoded_inputs

