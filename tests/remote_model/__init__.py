"""Build a tiny model folder that ships its own code and behaves as ChatGLM3-6B's does.

The folder holds what ChatGLM3's holds: `config.json` (`model_type: chatglm`, `auto_map` to the code files),
`tokenizer_config.json` (`auto_map`, no chat template, no special tokens), a SentencePiece `tokenizer.model`
trained here on the built-in corpus, the weights, and the code files of this package. Loading it needs
`trust_remote_code=True`. What the code reproduces (left-only padding, read-only special tokens, the model's own
prefix encoder, 2-D masks) is listed in each code file. Build it inside the env that loads it.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

CODE_DIR = Path(__file__).parent
CODE_FILES = ("configuration_tinyglm.py", "modeling_tinyglm.py", "tokenization_tinyglm.py")
TOKENIZER_CONFIG = {
    "remove_space": False, "do_lower_case": False, "tokenizer_class": "TinyGLMTokenizer",
    "auto_map": {"AutoTokenizer": ["tokenization_tinyglm.TinyGLMTokenizer", None]},
}
AUTO_MAP = {"AutoConfig": "configuration_tinyglm.TinyGLMConfig", "AutoModel": "modeling_tinyglm.TinyGLMForCausalLM",
            "AutoModelForCausalLM": "modeling_tinyglm.TinyGLMForCausalLM",
            "AutoModelForSeq2SeqLM": "modeling_tinyglm.TinyGLMForCausalLM"}


def train_sentencepiece(target: Path, vocab_size: int = 400) -> None:
    """A BPE SentencePiece model with byte fallback over the built-in English/Chinese corpus (unk 0, bos 1,
    eos 2; a dummy prefix, so "\\n" alone is "▁" + <0x0A>, as ChatGLM3's)."""
    import sentencepiece as spm

    from orchestrator.train.tiny import corpus_lines

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()), model_writer=out, vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, hard_vocab_limit=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    target.write_bytes(out.getvalue())


def build_tokenizer(out: Path):
    """Write tokenizer.model, tokenizer_config.json and the code files into `out`; returns the tokenizer."""
    from tests.remote_model.tokenization_tinyglm import TinyGLMTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_sentencepiece(out / "tokenizer.model")
    (out / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))
    for name in CODE_FILES:
        shutil.copy(CODE_DIR / name, out / name)
    return TinyGLMTokenizer(str(out / "tokenizer.model"))


def build_remote_model(out_dir: str | Path, hidden_size: int = 64, num_layers: int = 2, seed: int = 0) -> Path:
    """A random tiny ChatGLM3-like model + tokenizer whose code lives in the folder (needs trust_remote_code)."""
    import torch

    from tests.remote_model.configuration_tinyglm import TinyGLMConfig
    from tests.remote_model.modeling_tinyglm import TinyGLMForCausalLM

    out = Path(out_dir)
    tok = build_tokenizer(out)
    vocab = (tok.vocab_size + 63) // 64 * 64
    config = TinyGLMConfig(num_layers=num_layers, padded_vocab_size=vocab, hidden_size=hidden_size,
                           ffn_hidden_size=hidden_size * 2, kv_channels=hidden_size // 4, num_attention_heads=4,
                           multi_query_group_num=2, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                           tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = TinyGLMForCausalLM(config)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.05) if param.dim() > 1 else None
    model.save_pretrained(out, safe_serialization=True)
    data = json.loads((out / "config.json").read_text())
    data.update(model_type="chatglm", architectures=["TinyGLMForCausalLM"], auto_map=AUTO_MAP)
    (out / "config.json").write_text(json.dumps(data, indent=2))
    (out / "generation_config.json").unlink(missing_ok=True)
    return out


# The ChatGLM3 finetune guide's configs/lora.yaml and ptuning_v2.yaml, key for key (written here), at test size:
# `evaluation_strategy` (transformers 4.40's name), `predict_with_generate`, `generation_config`, `test_file`,
# `dataloader_num_workers`, and a peft_config without target_modules / with PREFIX_TUNING.
GUIDE_CONFIG = """\
data_config:
  train_file: train.json
  val_file: dev.json
  test_file: dev.json
  num_proc: 16
max_input_length: 48
max_output_length: 16
training_args:
  output_dir: {output}
  max_steps: 2
  learning_rate: 5e-3
  per_device_train_batch_size: 4
  dataloader_num_workers: 0
  remove_unused_columns: false
  save_strategy: steps
  save_steps: 2
  log_level: info
  logging_strategy: steps
  logging_steps: 1
  per_device_eval_batch_size: 4
  evaluation_strategy: steps
  eval_steps: 2
  predict_with_generate: true
  generation_config:
    max_new_tokens: 4
  use_cpu: false
peft_config:
{peft}
"""
GUIDE_LORA = "  peft_type: LORA\n  task_type: CAUSAL_LM\n  r: 8\n  lora_alpha: 32\n  lora_dropout: 0.1"
GUIDE_PTUNING = "  peft_type: PREFIX_TUNING\n  task_type: CAUSAL_LM\n  num_virtual_tokens: 8"


def write_guide_project(folder: str | Path, train: int = 24, dev: int = 6) -> Path:
    """The guide's data layout (`{"conversations": [...]}` in train.json / dev.json, from the sample chats) and its
    lora.yaml (output ./output) and ptuning_v2.yaml (output ./output_pt) in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sample = Path(__file__).resolve().parents[2] / "orchestrator" / "sample_data" / "chat_zh_en.jsonl"
    chats = [json.loads(line)["messages"] for line in sample.read_text(encoding="utf-8").splitlines()
             if "messages" in json.loads(line)]
    rows = [{"conversations": [m for m in chat if m["role"] != "system"]} for chat in chats]
    (folder / "train.json").write_text(json.dumps(rows[:train], ensure_ascii=False), encoding="utf-8")
    (folder / "dev.json").write_text(json.dumps(rows[train:train + dev], ensure_ascii=False), encoding="utf-8")
    (folder / "lora.yaml").write_text(GUIDE_CONFIG.format(output="./output", peft=GUIDE_LORA))
    (folder / "ptuning_v2.yaml").write_text(GUIDE_CONFIG.format(output="./output_pt", peft=GUIDE_PTUNING))
    return folder


def chatglm3_reply(model, tokenizer, query: str, max_new_tokens: int = 6) -> str:
    """Greedy answer the way ChatGLM3's own `chat()` makes it: `build_chat_input`'s ids (`[gMASK]sop`, the user
    turn, `<|assistant|>`; built here from the same calls, since `build_chat_input` pads, which transformers >= 4.45
    breaks), stop at EOS / `<|user|>` / `<|observation|>`, the metadata line cut off and the content stripped."""
    import torch

    prompt = tokenizer.get_prefix_tokens() + tokenizer.build_single_message("user", "", query)
    ids = torch.tensor([prompt + [tokenizer.get_command("<|assistant|>")]])
    stops = [tokenizer.eos_token_id, tokenizer.get_command("<|user|>"), tokenizer.get_command("<|observation|>")]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
    new = [t for t in out[0, ids.shape[1]:].tolist() if t not in stops]
    text = tokenizer.decode(new)
    metadata, content = text.split("\n", 1) if "\n" in text else ("", text)
    return content.strip() if not metadata.strip() else text.strip()
