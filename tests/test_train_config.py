"""Training configs: mistakes are one-line errors naming file and key, exit 2, before any model loads; the
ChatGLM3 finetune layout is read as ours."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.orch_cli import demo_project

from orchestrator.train.config import load_config

GOOD = """\
model: {model}
finetuning: lora
data: {{train: [train.jsonl]}}
lora: {{r: 8, alpha: 16, target_modules: [q_proj, v_proj]}}
training_args: {{output_dir: out, max_steps: 2}}
"""

BAD = {
    "unknown-top-key": ("finetunning: lora\n", "finetunning"),
    "bad-mode": ("finetuning: lora\n", "finetuning", "finetuning: lorra\n"),
    "bad-lora-r": ("lora: {r: 8", "lora.r", "lora: {r: eight"),
    "unknown-training-arg": ("max_steps: 2", "learnin_rate", "max_steps: 2, learnin_rate: 1"),
    "bad-generation": ("generation: {max_new_tokens: 0}\n", "generation.max_new_tokens"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_names_the_key_and_exits_2_before_loading(case, tmp_path):
    spec = BAD[case]
    (tmp_path / "model").mkdir()  # exists, but holds no weights: nothing may try to load it
    text = GOOD.format(model=tmp_path / "model")
    text = text + spec[0] if len(spec) == 2 else text.replace(spec[0], spec[2])
    config = tmp_path / "job.yaml"
    config.write_text(text)
    (tmp_path / "train.jsonl").write_text('{"input": "hi", "output": "hello"}\n')
    proc = subprocess.run([sys.executable, "-m", "orchestrator.train", str(config)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("orch train: error: ") and str(config) in proc.stderr and spec[1] in proc.stderr
    assert "Traceback" not in proc.stderr and "Loading weights" not in proc.stderr


def test_chatglm3_layout_is_translated(tmp_path):
    (tmp_path / "AdvertiseGen").mkdir()
    for name in ("train.json", "dev.json"):
        (tmp_path / "AdvertiseGen" / name).write_text('[{"conversations": []}]')
    (tmp_path / "base").mkdir()
    config = tmp_path / "lora.yaml"
    config.write_text(
        "data_config: {train_file: train.json, val_file: dev.json, test_file: dev.json, num_proc: 1}\n"
        "max_input_length: 128\nmax_output_length: 64\n"
        "training_args: {output_dir: ./output, max_steps: 3, per_device_train_batch_size: 1, learning_rate: 5.0e-5}\n"
        "peft_config: {peft_type: LORA, task_type: CAUSAL_LM, r: 8, lora_alpha: 32, lora_dropout: 0.1,"
        " target_modules: [q_proj, v_proj]}\n")
    cfg = load_config(config, model=str(tmp_path / "base"), data_dir=str(tmp_path / "AdvertiseGen"))
    assert cfg.finetuning == "lora" and cfg.lora.r == 8 and cfg.lora.alpha == 32
    assert cfg.data.train == ["train.json"] and cfg.data.eval == ["dev.json"]
    assert cfg.data.max_length == 192 and cfg.data_dir == str(tmp_path / "AdvertiseGen")


def test_a_launched_jobs_relative_output_dir_lands_in_the_output_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.jsonl").write_text('{"input": "hi", "output": "hello"}\n')
    config = tmp_path / "job.yaml"
    config.write_text(GOOD.format(model=tmp_path))
    monkeypatch.setenv("ORCH_OUTPUT_ROOT", str(tmp_path / "outputs"))
    monkeypatch.setenv("ORCH_RESUME", "latest")
    cfg = load_config(config)
    assert cfg.output_dir == str(tmp_path / "outputs" / "out")
    assert cfg.resume_from_checkpoint == "latest"


def test_chatglm3_style_yaml_runs_like_the_demo_passes_it(tmp_path):
    """`python -m orchestrator.train configs/lora.yaml --model BASE --data-dir data/AdvertiseGen`, as in
    ChatGLM3's finetune_hf.py, trains on its conversations files."""
    import json

    demo_project(tmp_path / "project")
    data = tmp_path / "AdvertiseGen"
    data.mkdir()
    rows = [json.loads(line) for line in (tmp_path / "project" / "data" / "train.jsonl").read_text().splitlines()]
    conversations = [{"conversations": row["messages"]} for row in rows if "messages" in row][:40]
    (data / "train.json").write_text(json.dumps(conversations, ensure_ascii=False))
    (data / "dev.json").write_text(json.dumps(conversations[:4], ensure_ascii=False))
    config = tmp_path / "lora.yaml"
    config.write_text(
        "data_config: {train_file: train.json, val_file: dev.json, test_file: dev.json, num_proc: 1}\n"
        "max_input_length: 96\nmax_output_length: 32\n"
        f"training_args: {{output_dir: {tmp_path / 'output'}, max_steps: 2, per_device_train_batch_size: 2,"
        " learning_rate: 5.0e-4, save_strategy: 'no', report_to: none, predict_with_generate: true}\n"
        "peft_config: {peft_type: LORA, task_type: CAUSAL_LM, r: 4, lora_alpha: 16, lora_dropout: 0.1,"
        " target_modules: [q_proj, v_proj]}\n")
    proc = subprocess.run([sys.executable, "-m", "orchestrator.train", str(config), "--model",
                           str(tmp_path / "project" / "base"), "--data-dir", str(data)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "output" / "adapter_model.safetensors").exists()


CHATGLM3_GENERATION = """\
data_config: {train_file: train.json, val_file: dev.json, test_file: dev.json, num_proc: 4}
max_input_length: 128
max_output_length: 64
training_args: {output_dir: ./output, max_steps: 3, evaluation_strategy: steps, eval_strategy: steps,
                predict_with_generate: true, generation_config: {max_new_tokens: 32, temperature: 0.7},
                generation_num_beams: 2, sortish_sampler: true}
peft_config: {peft_type: LORA, task_type: CAUSAL_LM, r: 8, lora_alpha: 32, target_modules: [q_proj, v_proj]}
"""


def _glm3_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "AdvertiseGen"
    folder.mkdir(exist_ok=True)
    for name in ("train.json", "dev.json"):
        (folder / name).write_text('[{"conversations": []}]')
    (tmp_path / "base").mkdir(exist_ok=True)
    return folder


def test_chatglm3_generation_keys_take_effect_and_the_rest_are_named(tmp_path):
    data = _glm3_dir(tmp_path)
    config = tmp_path / "lora.yaml"
    config.write_text(CHATGLM3_GENERATION)
    cfg = load_config(config, model=str(tmp_path / "base"), data_dir=str(data))
    gen = cfg.generation
    assert (gen.predict_with_generate, gen.max_new_tokens, gen.num_beams, gen.max_samples) == (True, 32, 2, 50)
    assert cfg.data.test == "dev.json"
    assert not {"predict_with_generate", "generation_config", "generation_num_beams", "sortish_sampler",
                "evaluation_strategy"} & set(cfg.training_args)
    assert sorted(cfg.warnings) == [
        "data_config.num_proc: ignored (orch tokenizes each file once, in parallel, on its own)",
        "training_args.evaluation_strategy: ignored (training_args.eval_strategy is set)",
        "training_args.generation_config.temperature: ignored (do_sample is false: greedy or beam decoding)",
        "training_args.sortish_sampler: ignored (a Seq2SeqTrainer option; orch's Trainer draws batches at random)",
    ]


def _one_sample_job(folder, body: str):
    """`folder/job.yaml` (model: the folder) with `body`, next to a one-sample train.jsonl."""
    (folder / "train.jsonl").write_text('{"input": "hi", "output": "hello"}\n')
    config = folder / "job.yaml"
    config.write_text(f"model: {folder}\n" + body)
    return config


def test_our_layout_warns_about_sections_that_cannot_apply(tmp_path):
    config = _one_sample_job(tmp_path, "finetuning: full\nlora: {r: 4}\ndpo: {beta: 0.2}\n"
                                       "data: {train: [train.jsonl], eval: train.jsonl, eval_ratio: 0.1}\n"
                                       "generation: {max_new_tokens: 16}\ntraining_args: {output_dir: out}\n")
    cfg = load_config(config, data_dir=str(tmp_path))
    assert sorted(cfg.warnings) == [
        "data.eval_ratio: ignored (data.eval is set and is the eval set)",
        "dpo: ignored (stage is sft)",
        ("generation.max_new_tokens: ignored (nothing is generated: predict_with_generate is off and there is no "
         "test set)"),
        "lora: ignored (finetuning is full; this section is for lora or qlora)",
    ]


@pytest.mark.parametrize("change, key", [
    (("generation_config: {max_new_tokens: 32,", "generation_config: {max_new_token: 32,"),
     ("training_args.generation_config.max_new_token: unknown key (did you mean "
      "training_args.generation_config.max_new_tokens?)")),
    (("temperature: 0.7", "temperature: 0"), "training_args.generation_config.temperature: must be a number above 0"),
    (("generation_num_beams: 2", "generation_num_beams: two"), "training_args.generation_num_beams: expected an"),
    (("val_file: dev.json, ", "", "evaluation_strategy: steps, eval_strategy: steps,", ""),
     "training_args.predict_with_generate: needs an eval set"),
    (("test_file: dev.json", "test_file: missing.json"), "data_config.test_file: file not found"),
    (("max_input_length", "stage: pt\nmax_input_length"), "training_args.predict_with_generate: generation needs"),
])
def test_bad_generation_settings_name_the_key_the_user_wrote(tmp_path, change, key):
    from orchestrator.errors import ConfigError

    data = _glm3_dir(tmp_path)
    config = tmp_path / "lora.yaml"
    text = CHATGLM3_GENERATION
    for i in range(0, len(change), 2):
        text = text.replace(change[i], change[i + 1])
    config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(config, model=str(tmp_path / "base"), data_dir=str(data))
    assert str(err.value).startswith(f"{config}: {key}"), str(err.value)


def test_a_generation_setting_given_twice_is_refused(tmp_path):
    from orchestrator.errors import ConfigError

    config = _one_sample_job(tmp_path, "data: {train: [train.jsonl], eval_ratio: 0.5}\n"
                                       "generation: {predict_with_generate: true, num_beams: 2}\n"
                                       "training_args: {output_dir: out, generation_num_beams: 4}\n")
    with pytest.raises(ConfigError, match="training_args.generation_num_beams: also set as generation.num_beams"):
        load_config(config, data_dir=str(tmp_path))


def test_prompt_adapters_refuse_packing_and_map_chatglm3_peft_types(tmp_path):
    from orchestrator.errors import ConfigError

    config = _one_sample_job(tmp_path, "finetuning: prefix\ndata: {train: [train.jsonl], packing: true}\n")
    with pytest.raises(ConfigError, match="data.packing: finetuning prefix puts virtual tokens before each row"):
        load_config(config, data_dir=str(tmp_path))
    glm3 = tmp_path / "ptuning.yaml"
    glm3.write_text(f"model: {tmp_path}\ndata_config: {{train_file: train.jsonl}}\ntraining_args: {{output_dir: o}}\n"
                    "peft_config: {peft_type: PREFIX_TUNING, task_type: CAUSAL_LM, num_virtual_tokens: 16}\n")
    cfg = load_config(glm3, data_dir=str(tmp_path))
    assert cfg.finetuning == "prefix" and cfg.prompt.num_virtual_tokens == 16


def test_orch_trains_checks_needs_neither_torch_nor_transformers(tmp_path):
    """`orch train`'s own config check (before the worker starts) imports neither: one-process start-up pays for
    them once, in the worker (bench/train_step.py measures the start-up)."""
    (tmp_path / "model").mkdir()
    (tmp_path / "job.yaml").write_text(GOOD.format(model=tmp_path / "model"))
    (tmp_path / "train.jsonl").write_text('{"input": "hi", "output": "hello"}\n')
    probe = ("import sys\nfrom orchestrator.train.config import load_config\n"
             "load_config('job.yaml', stack_checks=False)\n"
             "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_renamed_training_args_work_under_either_name_on_any_release():
    """The names each supported transformers release knows (4.40: evaluation_strategy, warmup_ratio, ...; 5.x:
    eval_strategy, warmup_steps taking a fraction, include_for_metrics)."""
    from orchestrator.train.config_checks import renamed_args

    old = {"evaluation_strategy", "warmup_ratio", "warmup_steps", "no_cuda", "use_cpu", "include_inputs_for_metrics"}
    new = {"eval_strategy", "warmup_steps", "use_cpu", "include_for_metrics"}
    guide = {"evaluation_strategy": "steps", "warmup_ratio": 0.1, "no_cuda": True, "include_inputs_for_metrics": True}
    assert renamed_args(guide, old) == guide  # 4.40 keeps the guide's names
    assert renamed_args(guide, new) == {"eval_strategy": "steps", "warmup_steps": 0.1, "use_cpu": True,
                                        "include_for_metrics": ["inputs"]}
    assert renamed_args({"eval_strategy": "epoch", "warmup_steps": 0.05, "include_for_metrics": ["inputs"]}, old) == \
        {"evaluation_strategy": "epoch", "warmup_ratio": 0.05, "include_inputs_for_metrics": True}
    assert renamed_args({"warmup_steps": 20}, old) == {"warmup_steps": 20}  # a step count is a step count
