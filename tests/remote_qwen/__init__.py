"""Build a tiny model folder shaped like Qwen-7B-Chat v1's: `auto_map` code in the folder, a tiktoken tokenizer
over a `bytes` vocabulary (file `tinyqwen.tiktoken`) with no eos/pad token and no chat template, model code that
takes only a 2-D padding mask, and `eos_token_id` / `pad_token_id` = the end-of-document id in config.json and
generation_config.json, as the real folder has them.

The BPE ranks are trained here (byte-level BPE of `tokenizers` on orch's built-in corpus, turned into byte
strings). Nothing comes from a hub. Works on transformers 4.40+ and 5.x (build it inside the env that loads it).
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

CODE_DIR = Path(__file__).parent
CODE_FILES = ("configuration_tinyqwen.py", "modeling_tinyqwen.py", "tokenization_tinyqwen.py")
VOCAB_FILE = "tinyqwen.tiktoken"


def _byte_ranks(vocab_size: int = 600) -> list[bytes]:
    """The 256 single bytes, then the merged tokens of a byte-level BPE trained on the built-in corpus, in merge
    order (what tiktoken's ranks are)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from orchestrator.train.tiny import corpus_lines

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(corpus_lines(), trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                                                initial_alphabet=alphabet))
    # byte-level's printable stand-ins for bytes: the same table GPT-2 uses
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = printable + [256 + n for n in range(256 - len(printable))]
    to_byte = dict(zip(map(chr, chars), [*printable, *(b for b in range(256) if b not in printable)]))
    singles = [bytes([b]) for b in range(256)]
    merged = [bytes(to_byte[c] for c in token) for token, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    return singles + [t for t in merged if len(t) > 1]


def _patch_json(path: Path, **updates) -> None:
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data.update(updates)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def build_tokenizer(out: Path):
    """Write the tokenizer (ranks file, code, tokenizer_config.json with `auto_map`) into `out`; returns it."""
    from tests.remote_qwen.tokenization_tinyqwen import TinyQwenTokenizer

    out.mkdir(parents=True, exist_ok=True)
    lines = [f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(_byte_ranks())]
    (out / VOCAB_FILE).write_text("".join(lines), encoding="utf-8")
    for name in CODE_FILES:
        shutil.copy(CODE_DIR / name, out / name)
    _patch_json(out / "tokenizer_config.json", tokenizer_class="TinyQwenTokenizer",
                auto_map={"AutoTokenizer": ["tokenization_tinyqwen.TinyQwenTokenizer", None]})
    return TinyQwenTokenizer(str(out / VOCAB_FILE))


def build_qwen_model(out_dir: str | Path, hidden_size: int = 64, num_layers: int = 2, seed: int = 0) -> Path:
    """A random tiny Qwen-v1-shaped model + tokenizer whose code lives in the folder (needs trust_remote_code)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tok = build_tokenizer(out)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=2048, bos_token_id=tok.eod_id, eos_token_id=tok.eod_id,
                         pad_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out)
    GenerationConfig(eos_token_id=tok.eod_id, pad_token_id=tok.eod_id, max_new_tokens=512).save_pretrained(out)
    _patch_json(out / "config.json", model_type="tinyqwen", architectures=["TinyQwenForCausalLM"],
                auto_map={"AutoConfig": "configuration_tinyqwen.TinyQwenConfig",
                          "AutoModelForCausalLM": "modeling_tinyqwen.TinyQwenForCausalLM"})
    return out
