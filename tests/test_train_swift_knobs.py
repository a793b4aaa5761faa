"""ms-swift's knobs as its guide's users write them: read under our names (swift's accepted where unambiguous), and
what each does to the data a run trains on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestrator.errors import ConfigError, DataError
from orchestrator.train.config import load_config
from orchestrator.train.data.dataset import build_sft_datasets
from orchestrator.train.data.spec import DataSpec
from orchestrator.train.self_cognition import self_cognition_samples

SAMPLE = "orchestrator/sample_data/chat_zh_en.jsonl"


@pytest.fixture
def project(tmp_path):
    (tmp_path / "model").mkdir()
    for name in ("train.jsonl", "val1.jsonl", "val2.jsonl"):
        (tmp_path / name).write_text('{"query": "hi", "response": "hello"}\n')
    return tmp_path


def _load(project, text):
    config = project / "job.yaml"
    config.write_text(f"model: {project / 'model'}\n" + text)
    return load_config(config, data_dir=str(project))


SWIFT = """\
sft_type: lora
custom_train_dataset_path: [train.jsonl]
custom_val_dataset_path: [val1.jsonl, val2.jsonl]
train_dataset_sample: 2000
val_dataset_sample: 100
max_length: -1
system: 你是一个乐于助人的助手。
lora_target_modules: ALL
lora_rank: 8
lora_alpha: 32
lora_dropout_p: 0.05
lora_dtype: bf16
deepspeed: default-zero3
self_cognition_sample: 500
model_name: [小黄, Xiao Huang]
model_author: [魔搭, ModelScope]
add_output_dir_suffix: true
output_dir: output
"""


def test_swift_names_land_on_ours(project):
    cfg = _load(project, SWIFT)
    assert cfg.finetuning == "lora" and cfg.data.train == ["train.jsonl"]
    assert cfg.data.eval == ["val1.jsonl", "val2.jsonl"]
    assert (cfg.data.train_samples, cfg.data.eval_samples, cfg.data.max_length) == (2000, 100, -1)
    assert cfg.data.system == "你是一个乐于助人的助手。"
    assert cfg.lora.target_modules == "all-linear" and (cfg.lora.r, cfg.lora.alpha, cfg.lora.dtype) == (8, 32, "bf16")
    assert cfg.deepspeed == "zero3"
    assert cfg.self_cognition.samples == 500 and cfg.self_cognition.name == ["小黄", "Xiao Huang"]
    assert cfg.versioned_output_dir and cfg.training_args["output_dir"] == "output"
    assert _load(project, "data: {train: train.jsonl}\nlora: {target_modules: DEFAULT}\n").lora.target_modules is None


@pytest.mark.parametrize(("text", "message"), [
    ("data: {train: train.jsonl}\nsft_type: longlora\n", "sft_type: longlora: LongLoRA (shifted sparse attention"),
    ("data: {train: train.jsonl}\nsft_type: qalora\n", "sft_type: qalora: QA-LoRA"),
    ("data: {train: train.jsonl}\nfinetuning: longlora\n", "finetuning: longlora: LongLoRA"),
    ("data: {train: train.jsonl}\ntrain_dataset_sample: lots\n", "train_dataset_sample: expected an integer"),
    ("data: {train: train.jsonl, max_length: 512}\nmax_length: -1\n", "max_length: also set as data.max_length"),
    ("data: {train: train.jsonl, max_length: -1, packing: true}\n", "data.packing: packing fills rows"),
    ("data: {train: train.jsonl}\nlora_dtype: int4\n", "lora_dtype: expected one of auto, fp32, bf16, fp16"),
    ("data: {train: train.jsonl}\nself_cognition_sample: 10\n", "self_cognition.name: required"),
    ("data: {train: [{path: train.jsonl, keep_language: fr}]}\n", "data.train[0].keep_language: expected one of zh"),
])
def test_swift_mistakes_are_one_line_naming_the_key_written(project, text, message):
    with pytest.raises(ConfigError) as err:
        _load(project, text)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("where", ["deepspeed: default-zero4\n", "training_args: {deepspeed: default-zero4}\n"])
def test_deepspeed_preset_errors_list_the_presets_and_no_internal_path(project, where):
    with pytest.raises(ConfigError) as err:
        _load(project, "data: {train: train.jsonl}\n" + where)
    text = str(err.value)
    assert "zero2, zero3, zero3_offload" in text and "default-zero3" in text and "templates" not in text
    assert _load(project, "data: {train: train.jsonl}\ntraining_args: {deepspeed: default-zero2}\n").deepspeed == "zero2"


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _spec(tmp_path, **kw):
    return DataSpec(train=[SAMPLE], base_dir=".", cache_dir=str(tmp_path / "cache"), **kw)


def test_sample_counts_several_eval_files_and_no_limit(tmp_path, tokenizer):
    full, _, _ = build_sft_datasets(_spec(tmp_path, max_length=-1), tokenizer)
    assert len(full) == 200
    some, ev, report = build_sft_datasets(_spec(tmp_path, train_samples=50, eval=[SAMPLE, SAMPLE], eval_samples=30),
                                          tokenizer)
    assert len(some) == 50 and len(ev) == 30 and report.train_samples == 50
    again, _, _ = build_sft_datasets(_spec(tmp_path, train_samples=50), tokenizer)
    assert [some[i]["input_ids"] for i in range(50)] == [again[i]["input_ids"] for i in range(50)]


def test_default_system_prompt_goes_to_samples_without_one(tmp_path, tokenizer):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"query": "你好", "response": "你好！"}, ensure_ascii=False) + "\n"
                    + json.dumps({"system": "自带", "query": "q", "response": "a"}, ensure_ascii=False) + "\n")
    ds, _, _ = build_sft_datasets(DataSpec(train=[str(data)], cache_dir=str(tmp_path / "c"), template="chatml",
                                           system="你是医生"), tokenizer)
    first, second = (tokenizer.decode(ds[i]["input_ids"]) for i in range(2))
    assert "system\n你是医生" in first and "你是医生" not in second and "system\n自带" in second


def test_chatglm3_caps_cut_input_and_output_separately(tmp_path, tokenizer):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"input": "问" * 300, "output": "答" * 300}, ensure_ascii=False) + "\n")
    spec = DataSpec(train=[str(data)], cache_dir=str(tmp_path / "c"), template="chatml", max_length=40,
                    truncation_strategy="right", max_input_length=20, max_output_length=20)
    ds, _, _ = build_sft_datasets(spec, tokenizer)
    row = ds[0]
    assert len(row["input_ids"]) == 40
    assert all(label == -100 for label in row["labels"][:20]) and all(lab != -100 for lab in row["labels"][20:])
    with pytest.raises(DataError, match="no training samples left"):  # one cap of 40 leaves no answer
        build_sft_datasets(DataSpec(train=[str(data)], cache_dir=str(tmp_path / "c"), template="chatml",
                                    max_length=40, truncation_strategy="right"), tokenizer)


def test_self_cognition_has_names_per_language_and_a_count():
    rows = self_cognition_samples(["小黄", "Xiao Huang"], ["魔搭", "ModelScope"], count=30)
    assert len(rows) == 30
    zh = [r for r in rows if "你" in r["input"]]
    en = [r for r in rows if "you" in r["input"].lower()]
    assert zh and en and all("小黄" in r["output"] and "Xiao Huang" not in r["output"] for r in zh)
    assert all("Xiao Huang" in r["output"] or "ModelScope" in r["output"] for r in en)


def test_self_cognition_command_takes_both_languages_and_a_count(tmp_path):
    out = tmp_path / "sc.jsonl"
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "self-cognition", "--name", "小黄", "--name",
                           "Xiao Huang", "--author", "魔搭", "--author", "ModelScope", "--num", "40", "--output",
                           str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 40 and any("Xiao Huang" in r["output"] for r in rows)


def test_an_index_folder_is_used_as_built_or_one_line_says_what_differs(tmp_path, tokenizer, capsys):
    from orchestrator.train.data.index import build_index

    build_index(SAMPLE, tmp_path / "idx", tokenizer, workers=1)  # orch data index's defaults
    capsys.readouterr()
    ds, _, _ = build_sft_datasets(DataSpec(train=[str(tmp_path / "idx")], cache_dir=str(tmp_path / "c")), tokenizer)
    assert len(ds) == 200 and capsys.readouterr().err == "" and not (tmp_path / "c").exists()
    build_sft_datasets(DataSpec(train=[str(tmp_path / "idx")], cache_dir=str(tmp_path / "c"), template="fm9g"),
                       tokenizer)
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {tmp_path / 'idx'}: not used as built (its template is tokenizer, this run's is fm9g); "
                     "tokenizing its data.jsonl again"]


def test_the_cache_is_keyed_by_content_and_bounded_by_least_recent_use(tmp_path, tokenizer, monkeypatch):
    from orchestrator.train.data import cache

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "d.jsonl").write_bytes(open(SAMPLE, "rb").read())
    spec = lambda folder, **kw: DataSpec(train=[str(tmp_path / folder / "d.jsonl")],  # noqa: E731
                                         cache_dir=str(tmp_path / "c"), **kw)
    build_sft_datasets(spec("a"), tokenizer)
    build_sft_datasets(spec("b"), tokenizer)  # another path, the same content: one entry
    assert len([p for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")]) == 1
    old = next(p for p in (tmp_path / "c").iterdir() if not p.name.startswith("."))
    monkeypatch.setenv("ORCH_DATA_CACHE_GB", str(cache._size(old) * 1.5 / (1 << 30)))
    build_sft_datasets(spec("a", template="fm9g"), tokenizer)  # a second entry: the older one goes
    left = [p for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")]
    assert len(left) == 1 and left[0] != old


def test_a_mapped_config_entry_trains_and_its_errors_name_the_original_file_and_line(tmp_path, tokenizer):
    rows = [{"Question": "感冒了怎么办？", "Complex_CoT": "...", "Response": "多喝水。"},
            {"Question": "What helps?", "Complex_CoT": "...", "Response": "Rest."},
            {"Question": "发烧怎么办？", "Complex_CoT": "...", "Response": "<|im_start|>休息"}]
    (tmp_path / "medical.json").write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    entry = {"path": "medical.json", "columns": {"input": "Question", "output": "Response"}, "keep_language": "zh"}
    spec = lambda **kw: DataSpec(train=[entry], base_dir=str(tmp_path), cache_dir=str(tmp_path / "c"),  # noqa: E731
                                 template="chatml", **kw)
    with pytest.raises(DataError, match=r"medical\.json:12: the user turn|medical\.json:12: the assistant turn"):
        build_sft_datasets(spec(), tokenizer)
    rows[2]["Response"] = "休息。"
    (tmp_path / "medical.json").write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    ds, _, _ = build_sft_datasets(spec(), tokenizer)
    assert len(ds) == 2 and "感冒了怎么办？" in tokenizer.decode(ds[0]["input_ids"])


def test_the_cache_lives_beside_a_nodes_outputs_else_under_orch_home(tmp_path, monkeypatch):
    from orchestrator.train.data.cache import default_cache_dir

    for name in ("ORCH_DATA_CACHE", "ORCH_OUTPUT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / "data-cache"
    monkeypatch.setenv("ORCH_OUTPUT_ROOT", str(tmp_path / "workdir" / "outputs" / "proj"))  # a launched job
    assert default_cache_dir() == tmp_path / "workdir" / "data-cache"  # every job and project of the node


def test_versioned_output_dir_is_one_folder_per_run_shared_by_ranks_and_restarts(tmp_path, monkeypatch):
    from orchestrator.train.output_dirs import versioned

    monkeypatch.setenv("ORCH_JOB_ID", "job-a")
    first = versioned(str(tmp_path / "out"))
    assert versioned(str(tmp_path / "out")) == first and first.split("/")[-1].startswith("v0-")  # rank 1, restart
    monkeypatch.setenv("ORCH_JOB_ID", "job-b")
    assert versioned(str(tmp_path / "out")).split("/")[-1].startswith("v1-")


def test_chatglm3_caps_keep_the_last_answer_of_a_multi_turn_chat():
    import numpy as np

    from orchestrator.train.data.pack import truncate_io

    ids = np.arange(12)
    mask = np.array([0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1], dtype=np.uint8)  # two answers; the last starts at 9
    kept, kept_mask = truncate_io(ids, mask, max_input=5, max_output=2)
    assert kept.tolist() == [0, 1, 2, 3, 4, 9, 10] and kept_mask.tolist() == [0, 0, 1, 1, 0, 1, 1]
