"""Build a tiny model folder that ships its own code, shaped like ChatGLM3's: `auto_map` in config.json and
tokenizer_config.json pointing at `.py` files in the folder, a slow tokenizer with role tokens and `[gMASK]sop`.

Loading it needs `trust_remote_code=True`, as ChatGLM3-6B, Qwen-7B-Chat (v1) and FM9G do. Everything is written
here from a config; nothing comes from a hub. Works on transformers 4.40+ and 5.x (build it inside the env that
loads it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

CODE_DIR = Path(__file__).parent
CODE_FILES = ("configuration_tinyglm.py", "modeling_tinyglm.py", "tokenization_tinyglm.py")

CHAT_TEMPLATE = (
    "[gMASK]sop"
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _vocab() -> dict[str, int]:
    """Special and role tokens, the 256 byte-fallback tokens, then every character of the built-in corpus."""
    from orchestrator.train.tiny import corpus_lines
    from tests.remote_model.tokenization_tinyglm import PREFIX_TOKENS, ROLE_TOKENS

    tokens = ["<unk>", "<pad>", "</s>", *ROLE_TOKENS, *PREFIX_TOKENS] + [f"<0x{b:02X}>" for b in range(256)]
    chars = sorted({ch for line in corpus_lines() for ch in line} | set("\n ABCDEFGHIJKLMNOPQRSTUVWXYZ?!.,:'\""))
    return {tok: i for i, tok in enumerate(tokens + chars)}


def _patch_json(path: Path, **updates) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(updates)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def build_tokenizer(out: Path):
    """Write the slow tokenizer (vocab, config with `auto_map`, chat template) into `out`; returns it."""
    from tests.remote_model.tokenization_tinyglm import TinyGLMTokenizer

    out.mkdir(parents=True, exist_ok=True)
    vocab_file = out / "tinyglm_vocab.json"
    vocab_file.write_text(json.dumps(_vocab(), ensure_ascii=False), encoding="utf-8")
    tok = TinyGLMTokenizer(str(vocab_file))
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    for name in CODE_FILES:
        shutil.copy(CODE_DIR / name, out / name)
    _patch_json(out / "tokenizer_config.json", tokenizer_class="TinyGLMTokenizer",
                auto_map={"AutoTokenizer": ["tokenization_tinyglm.TinyGLMTokenizer", None]},
                chat_template=CHAT_TEMPLATE)
    return tok


def build_remote_model(out_dir: str | Path, hidden_size: int = 64, num_layers: int = 2, seed: int = 0) -> Path:
    """A random tiny ChatGLM3-shaped model + tokenizer whose code lives in the folder (needs trust_remote_code)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tok = build_tokenizer(out)
    stop_ids = [tok.eos_token_id, *tok.convert_tokens_to_ids(["<|user|>", "<|observation|>"])]
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, bos_token_id=None, eos_token_id=stop_ids,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    _patch_json(out / "config.json", model_type="tinyglm", architectures=["TinyGLMForCausalLM"],
                auto_map={"AutoConfig": "configuration_tinyglm.TinyGLMConfig",
                          "AutoModel": "modeling_tinyglm.TinyGLMForCausalLM",
                          "AutoModelForCausalLM": "modeling_tinyglm.TinyGLMForCausalLM"})
    return out
