"""Build a tiny Llama and a locally trained tokenizer: the demo model and the test fixture (nothing from a hub).

The tokenizer is byte-level BPE trained on a small English/Chinese corpus, with ChatML special tokens and a ChatML
`chat_template` whose assistant turns are wrapped in `{% generation %}` so transformers can report assistant masks.
"""

from __future__ import annotations

import json
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_SEED_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Distributed training runs one process per GPU and averages gradients with all_reduce.",
    "Fine-tuning adapts a pretrained language model to a new task with a small learning rate.",
    "LoRA trains two small matrices per layer instead of the full weight.",
    "Hello! How can I help you today? I am a helpful assistant.",
    "你好！我是一个乐于助人的助手，很高兴为你服务。",
    "大语言模型在多个节点上训练，每个节点有八张显卡。",
    "请问今天天气怎么样？今天是晴天，适合出门散步。",
    "机器学习工程师使用命令行启动训练任务。",
    "What is the capital of France? The capital of France is Paris.",
    "北京是中国的首都，上海是最大的城市。",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.",
]


def corpus_lines(extra: list[str] | None = None) -> list[str]:
    """The built-in training corpus for the tokenizer, plus any extra lines."""
    return list(_SEED_TEXT) * 4 + list(extra or [])


def build_tokenizer(out_dir: str | Path, vocab_size: int = 512, extra_text: list[str] | None = None):
    """Train a byte-level BPE tokenizer locally and save it as a transformers tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(extra_text), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return fast


def build_tiny_model(
    out_dir: str | Path,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    extra_text: list[str] | None = None,
) -> Path:
    """Write a tiny LlamaForCausalLM (random init, fixed seed) and its tokenizer into `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = build_tokenizer(out, extra_text=extra_text)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    (out / "orch_tiny.json").write_text(json.dumps({"hidden_size": hidden_size, "num_layers": num_layers}))
    return out
