"""Issue 19's 3 -> 2 restart on the namespace test cluster with a shared filesystem (`shared_fs = true`): a 3-node
ZeRO-3 full fine-tune (1 sample per device x 2 accumulation x 3 processes = a global batch of 6) loses node3 right
after checkpoint-4; `orch restart JOB --exclude-node node3 --no-spares` (node0 is a healthy spare the flag leaves
out) finishes step 8 on node1,node2 with gradient accumulation 3, starting from the gathered weights and Adam moments
the 3-node job saved, the loss curve going on where it stopped; the model it saves is whole (ZeRO-3's partitions
gathered) and equals checkpoint-8's gathered fp32 weights."""

from __future__ import annotations

import json

from tests.orch_cli import demo_project, job_id_of, job_json, lose_last_node, orch
from tests.test_train_distributed import assert_final_weights_are_the_gathered_ones
from tests.test_train_reshape import CONFIG, assert_resumed_as_saved


def test_zero3_job_that_lost_one_of_three_nodes_resumes_on_two(cluster, orch_home, tmp_path):
    project = demo_project(tmp_path / "llm")
    (project / ".orchignore").write_text("out/\ndumps/\n")
    out = project / "out" / "z3"
    config = CONFIG.format(steps=8, mode="full", preset="zero3", out=out, batch=1, accumulation=2,
                           schedule="constant")
    assert "learning_rate: 1.0e-2" in config
    (project / "z3.yaml").write_text(config.replace("learning_rate: 1.0e-2", "learning_rate: 3.0e-3"))  # full FT
    inventory = tmp_path / "shared-spare.toml"
    inventory.write_text(cluster.inventory.read_text().replace("[cluster]\n", "[cluster]\nshared_fs = true\n", 1)
                         .replace('name = "node0"\n', 'name = "node0"\nspare = true\n', 1))
    env = {"ORCH_CLUSTER": str(inventory), "ORCH_HOME": str(orch_home)}

    lost = lose_last_node(project, env, "node1,node2,node3", "z3.yaml", project / "dumps")
    assert (out / "checkpoint-4" / "orch_complete.json").is_file()  # node1 marked it: the save was whole

    restarted = orch("restart", lost["id"], "--exclude-node", "node3", "--no-spares", env=env, timeout=600)
    said = restarted.stdout + restarted.stderr
    assert restarted.returncode == 0, said[-5000:]
    assert "(spare)" not in said, said[-3000:]
    again = job_json(job_id_of(restarted), env=env)
    assert again["state"] == "SUCCEEDED" and [n["name"] for n in again["nodes"]] == ["node1", "node2"], again
    assert again["replaced"] == {}, again
    log = orch("logs", again["id"], env=env, check=True).stdout
    assert log.count("resume: world size 3 -> 2: gradient accumulation 2 -> 3 keeps the global batch at 6") == 1, log
    assert f"resuming from {out / 'checkpoint-4'}" in log, log
    every = orch("logs", again["id"], "--all", env=env, check=True).stdout  # whichever node took the lock converts
    assert every.count("to DeepSpeed's universal checkpoint") == 1, every  # once: the shared copy is cached
    assert "world size: 2; effective global batch: 6 (1 per device x 3 accumulation" in log, log
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    assert_resumed_as_saved(project, ".", ".")  # one dump folder: the 3-node job saved-4, its restart resumed-4
    curve = {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}
    assert sorted(curve) == list(range(1, 9)) and curve[8] < curve[1], curve  # the curve goes on where it stopped
    assert abs(curve[5] - curve[4]) < 0.05 * curve[4], curve
    assert_final_weights_are_the_gathered_ones(project / "base", out, step=8)
