"""The files a job names besides its code: which travel with it (even when ignored) and which every node must
already have; the second rsync pass that sends them, with real rsync on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cluster.inventory import Node
from orchestrator.cluster.ssh import Session
from orchestrator.cluster.sync import sync
from orchestrator.errors import PlanError
from orchestrator.jobs.inputs import job_inputs

TRAIN = ["-m", "orchestrator.train", "job.yaml"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose data, model and mixture files are all git-ignored."""
    root = tmp_path / "llm"
    for rel in ("data/medical/train.jsonl", "data/medical/unused.jsonl", "data/zh/part.jsonl", "base/config.json",
                "mix/upper.py", "ds.json", "train.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("{}\n")
    (root / ".gitignore").write_text("data/\nbase/\nmix/\n")
    (root / "mix" / "mixture.json").write_text(json.dumps([
        {"dataset_name": "zh", "abs_weight": 2, "path": "../data/zh/part.jsonl", "transforms": "upper.py"},
        {"dataset_name": "med", "abs_weight": 1, "path": "../data/medical"}]))
    return root


def write_config(project: Path, text: str) -> None:
    (project / "job.yaml").write_text(text)


def test_a_training_config_names_what_travels_and_what_each_node_needs(project):
    write_config(project, "model: base\n"
                          "data: {train: [data/medical/train.jsonl, mix/mixture.json], eval: /srv/eval.jsonl}\n"
                          "deepspeed: ds.json\ntraining_args: {output_dir: out}\n")
    inputs = job_inputs(TRAIN, ["train.py"], project)
    assert set(inputs.inside) == {"train.py", "base", "data/medical/train.jsonl", "mix/mixture.json", "ds.json",
                                  "data/zh/part.jsonl", "mix/upper.py", "data/medical"}
    assert inputs.outside == {"/srv/eval.jsonl": "job.yaml: data.eval"}


def test_a_hub_model_id_and_a_plain_command_name_nothing(project):
    write_config(project, "model: Qwen/Qwen2.5-0.5B\ndata: {train: data/medical/train.jsonl}\n")
    assert job_inputs(TRAIN, [], project).inside == ("data/medical/train.jsonl",)
    assert job_inputs(["python", "train.py"], [], project).inside == ()


def test_data_dir_prefixes_relative_paths(project):
    write_config(project, "model: /models/llama\ndata_dir: data/medical\ndata: {train: [train.jsonl]}\n")
    inputs = job_inputs(TRAIN, [], project)
    assert inputs.inside == ("data/medical/train.jsonl",)
    assert inputs.outside == {"/models/llama": "job.yaml: model"}


def test_the_chatglm3_layout_names_its_data_files_too(project):
    write_config(project, "data_dir: data/medical\ndata_config: {train_file: train.jsonl, val_file: unused.jsonl}\n")
    assert set(job_inputs(TRAIN, [], project).inside) == {"data/medical/train.jsonl", "data/medical/unused.jsonl"}


def test_mistakes_are_plan_errors_naming_the_path(project, tmp_path):
    (tmp_path / "elsewhere.jsonl").write_text("{}\n")
    write_config(project, "data: {train: [../elsewhere.jsonl]}\n")
    with pytest.raises(PlanError, match=r"job.yaml: data.train\[0\]: \.\./elsewhere.jsonl is outside the project"):
        job_inputs(TRAIN, [], project)
    write_config(project, "data: {train: [a.jsonl]\n")
    with pytest.raises(PlanError, match=r"job.yaml:\d+: malformed YAML"):
        job_inputs(TRAIN, [], project)
    with pytest.raises(PlanError, match="--sync nope: no such file or folder"):
        job_inputs(["python", "train.py"], ["nope"], project)


def test_named_paths_are_sent_without_their_ignored_neighbours(project, tmp_path):
    node = Node(name="local", host=None, addr="127.0.0.1", gpus=0, workdir=str(tmp_path), python="python3")
    target = tmp_path / "cache"
    with Session() as session:
        first = sync(session, node, project, str(target), also=("data/medical/train.jsonl", "base"))
        again = sync(session, node, project, str(target), also=("data/medical/train.jsonl", "base"))
    assert (target / "data/medical/train.jsonl").is_file() and (target / "base/config.json").is_file()
    assert not (target / "data/medical/unused.jsonl").exists() and not (target / "mix").exists()
    assert (target / "train.py").is_file()  # the code itself, by the first pass
    assert "data/medical/train.jsonl" in first.files_sent and again.files_sent == []  # incremental
