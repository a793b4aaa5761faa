"""Issue 19's sequence on the namespace test cluster with a shared filesystem (`shared_fs = true`; the project
folder, which holds the outputs, is visible on every node at the same path): a 2-node ZeRO-2 LoRA job loses node2
right after checkpoint-4; `orch restart JOB --exclude-node node2` finishes step 8 on node1 alone with gradient
accumulation 2, starting from the gathered weights and Adam moments the 2-node job saved; then a launch on
node1,node2 grows it back to 2 nodes (accumulation 1) and finishes step 12."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.orch_cli import demo_project, job_id_of, job_json, lose_last_node, orch
from tests.test_train_reshape import CONFIG, assert_resumed_as_saved


@pytest.fixture(scope="module")
def shared(cluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The project (outputs inside it, on the "shared filesystem") and an inventory saying `shared_fs = true`."""
    folder = demo_project(tmp_path_factory.mktemp("reshape-cluster") / "llm")
    (folder / ".orchignore").write_text("out/\ndumps/\n")
    out = folder / "out" / "z2"
    fields = {"mode": "lora", "preset": "zero2", "out": out, "batch": 2, "accumulation": 1, "schedule": "constant"}
    (folder / "z2.yaml").write_text(CONFIG.format(steps=8, **fields))
    (folder / "grow.yaml").write_text(CONFIG.format(steps=12, **fields))
    inventory = folder.parent / "shared.toml"
    inventory.write_text(cluster.inventory.read_text().replace("[cluster]\n", "[cluster]\nshared_fs = true\n", 1))
    return folder, inventory


def losses(folder: Path, step: int) -> dict[int, float]:
    state = json.loads((folder / f"checkpoint-{step}" / "trainer_state.json").read_text())
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


def test_zero2_job_that_lost_a_node_resumes_on_one_then_grows_to_two(shared, orch_home):
    project, inventory = shared
    env = {"ORCH_CLUSTER": str(inventory), "ORCH_HOME": str(orch_home)}
    out = project / "out" / "z2"
    lost = lose_last_node(project, env, "node1,node2", "z2.yaml", project / "dumps" / "a")
    assert (out / "checkpoint-4" / "orch_complete.json").is_file()  # node1 marked it: the save was whole

    restarted = orch("restart", lost["id"], "--exclude-node", "node2", env=env, timeout=600)
    said = restarted.stdout + restarted.stderr
    assert restarted.returncode == 0, said[-5000:]
    again = job_json(job_id_of(restarted), env=env)
    assert again["state"] == "SUCCEEDED" and [n["name"] for n in again["nodes"]] == ["node1"], again
    log = orch("logs", again["id"], env=env, check=True).stdout
    assert log.count("resume: world size 2 -> 1: gradient accumulation 1 -> 2 keeps the global batch at 4") == 1, log
    assert f"resuming from {out / 'checkpoint-4'}" in log and "to DeepSpeed's universal checkpoint" in log, log
    assert "world size: 1; effective global batch: 4 (2 per device x 2 accumulation" in log
    assert json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())["global_step"] == 8
    assert_resumed_as_saved(project, "a", "a")  # one dump folder: the first job saved-4, its restart resumed-4
    curve = losses(out, 8)
    assert sorted(curve) == list(range(1, 9)) and curve[8] < curve[1], curve  # the curve goes on where it stopped
    assert abs(curve[5] - curve[4]) < 0.05 * curve[4], curve

    grown = orch("launch", "--nodes", "node1,node2", "--nproc-per-node", "1", "--env",
                 f"ORCH_DUMP_STATE={project / 'dumps' / 'b'}", "grow.yaml", cwd=project, env=env, timeout=600)
    said = grown.stdout + grown.stderr
    assert grown.returncode == 0, said[-5000:]
    log = orch("logs", job_id_of(grown), env=env, check=True).stdout
    assert "resume: world size 1 -> 2: gradient accumulation 2 -> 1 keeps the global batch at 4" in log, log
    assert json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())["global_step"] == 12
    assert_resumed_as_saved(project, "a", "b", step=8)  # what node1 alone saved at 8, re-partitioned over two


def test_without_a_shared_filesystem_the_restart_says_which_checkpoint_it_falls_back_to(shared, env, cluster):
    """The same loss without a shared filesystem: node2's ZeRO partition of checkpoint-4 died with it, so node1
    alone cannot re-partition checkpoint-4; its log says so in one line and where it starts instead."""
    project, _ = shared
    (project / "local.yaml").write_text(CONFIG.format(steps=8, mode="lora", preset="zero2", out="out/local", batch=2,
                                                      accumulation=1, schedule="constant"))
    first = orch("launch", "--nodes", "node1,node2", "--nproc-per-node", "1", "--env",
                 "ORCH_FAILPOINT=checkpoint-save:4:node2", "local.yaml", cwd=project, env=env, timeout=600)
    lost = job_json(job_id_of(first), env=env)
    assert lost["state"] == "FAILED" and "node node2" in lost["root_cause"], lost
    restarted = orch("restart", lost["id"], "--exclude-node", "node2", env=env, timeout=600)
    assert restarted.returncode == 0, (restarted.stdout + restarted.stderr)[-5000:]
    log = orch("logs", job_id_of(restarted), env=env, check=True).stdout
    assert ("resume: checkpoint-4 lacks the ZeRO partition(s) of rank(s) 1 on a node of this job (saved on another "
            "world size, no shared filesystem: they stayed on a node not in this job); falling back to step 0") in log
    assert "resume: no complete checkpoint" not in log and "resuming from" not in log  # one line says it all
    out = cluster.node_path("node1", "outputs", "llm", "out", "local")
    assert json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())["global_step"] == 8
