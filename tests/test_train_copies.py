"""`checkpoint_copies: every_node`'s exchange (`orchestrator.train.copies`) between two real gloo processes, each
with its own folder as its "node": afterwards both hold every file, byte for byte, copied in several chunks, with no
half-copied file left and `orch_copies.json` saying what each received; the exchange runs in a background thread
on the leaders' own group while the main thread keeps running collectives on the default group (as training does),
and neither blocks the other."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

import pytest

CHUNK = 4096


def node_files(rank: int) -> dict[str, bytes]:
    """What each "node" wrote: its own partition (bigger than a few chunks, not a multiple of one), shared files,
    markers each node writes for itself, and a universal conversion that must not travel."""
    noise = random.Random(rank).randbytes
    own = {f"global_step2/zero_pp_rank_{rank}_mp_rank_00_optim_states.pt": noise(3 * CHUNK + 123 + rank),
           f"rng_state_{rank}.pth": noise(100), "trainer_state.json": b'{"global_step": 2}',
           "orch_complete.json": f'{{"node": {rank}}}'.encode(), f"empty_{rank}": b""}
    if rank == 0:
        own["global_step2/mp_rank_00_model_states.pt"] = noise(CHUNK)
        own["global_step2_universal/zero/w/fp32.pt"] = b"converted here"
    return own


def leader(rank: int, root: str, port: int) -> None:
    import torch
    import torch.distributed as dist

    from orchestrator.train.copies import Copies

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK="0")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    folder = Path(root, f"node{rank}", "checkpoint-2")
    for relative, data in node_files(rank).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    exchanger = Copies.setup(chunk=CHUNK)  # several chunks per file
    exchanger.start(folder)
    total = torch.zeros(1)
    for _ in range(200):  # training's collectives meanwhile, on the default group
        step = torch.ones(1)
        dist.all_reduce(step)
        total += step
    exchanger.wait()
    assert float(total) == 400
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_end_with_every_file_while_training_collectives_run(tmp_path):
    import torch.multiprocessing as mp

    from orchestrator.train.copies import COPIES_DONE

    mp.spawn(leader, args=(str(tmp_path), free_port()), nprocs=2, join=True)
    written = {0: node_files(0), 1: node_files(1)}
    for rank in (0, 1):
        folder = tmp_path / f"node{rank}" / "checkpoint-2"
        held = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        assert json.loads(held.pop("orch_complete.json")) == {"node": rank}  # its own marker, not the other's
        done = json.loads(held.pop(COPIES_DONE))
        other = written[1 - rank]
        expected = {k: v for k, v in other.items() if k not in written[rank] and "universal" not in k
                    and k != "orch_complete.json"}
        assert done["files_received"] == len(expected) and done["bytes_received"] == sum(map(len, expected.values()))
        mine = {k: v for k, v in written[rank].items() if k != "orch_complete.json"}
        assert held == {**expected, **mine}, sorted(held)  # byte for byte; no .orch-partial left


def test_a_listing_leaves_out_what_each_node_writes_for_itself(tmp_path):
    from orchestrator.train.copies import listing

    for relative, data in node_files(0).items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(data)
    (tmp_path / "global_step2" / "zero_pp_rank_1_mp_rank_00_optim_states.pt.orch-partial").write_bytes(b"half")
    (tmp_path / "orch_copies.json.tmp").write_bytes(b"{")
    assert sorted(listing(tmp_path)) == sorted(k for k in node_files(0) if "universal" not in k and
                                               k != "orch_complete.json")


@pytest.mark.parametrize("shared, copies, noted", [("1", "every_node", True), (None, "every_node", True),
                                                   ("0", "every_node", False), ("1", "own_node", False)])
def test_checkpoint_copies_with_a_shared_filesystem_is_named_as_without_effect(tmp_path, monkeypatch, shared,
                                                                               copies, noted):
    from orchestrator.train.config import load_config

    (tmp_path / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    (tmp_path / "c.yaml").write_text(f"model: base\ndata: {{train: [train.jsonl]}}\ncheckpoint_copies: {copies}\n")
    if shared is None:
        monkeypatch.delenv("ORCH_SHARED_FS", raising=False)
    else:
        monkeypatch.setenv("ORCH_SHARED_FS", shared)
    monkeypatch.chdir(tmp_path)
    warnings = load_config("c.yaml", stack_checks=False).warnings
    assert (warnings == ["checkpoint_copies: no effect here (every node sees the same output folder: a shared "
                         "filesystem, or one machine)"]) == noted, warnings


def test_checkpoint_copies_takes_one_of_two_values(tmp_path):
    from orchestrator.errors import ConfigError
    from orchestrator.train.config import load_config

    (tmp_path / "train.jsonl").write_text("{}\n")
    (tmp_path / "c.yaml").write_text(f"model: base\ndata: {{train: [{tmp_path / 'train.jsonl'}]}}\n"
                                     "checkpoint_copies: all\n")
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path / "c.yaml", stack_checks=False)
    assert str(refused.value) == (f"{tmp_path / 'c.yaml'}: checkpoint_copies: expected one of own_node, every_node "
                                  "(got 'all')")


def test_the_next_save_and_the_end_of_training_wait_for_the_exchange_in_flight():
    import threading

    from transformers import TrainerControl

    from orchestrator.train.checkpoints import completeness_callback
    from orchestrator.train.copies import Copies

    marker = completeness_callback("every_node")
    for hook in ("on_step_end", "on_epoch_end", "on_train_end"):
        release = threading.Event()
        marker.copies = Copies(None, [0, 1])
        marker.copies.thread = threading.Thread(target=release.wait, daemon=True)
        marker.copies.thread.start()
        thread = marker.copies.thread
        if hook != "on_train_end":
            getattr(marker, hook)(None, None, TrainerControl(should_save=False))  # no save next: training goes on
            assert thread.is_alive() and marker.copies.thread is thread
        threading.Timer(0.2, release.set).start()
        getattr(marker, hook)(None, None, TrainerControl(should_save=True))
        assert not thread.is_alive() and marker.copies.thread is None, hook


def test_the_optimizer_partitions_are_sent_last_so_one_counted_means_the_rest_arrived():
    """bf16 partitions sort before ZeRO-3's per-rank model states by name; a broken-off exchange must never leave a
    node with a rank's optimizer partition (what makes a checkpoint count as whole) but not its model states."""
    from orchestrator.train.copies import send_order

    names = ["global_step4/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt", "adapter_model.safetensors",
             "global_step4/zero_pp_rank_1_mp_rank_00_model_states.pt", "trainer_state.json",
             "global_step4/zero_pp_rank_0_mp_rank_00_optim_states.pt"]
    assert send_order(names) == ["adapter_model.safetensors", "global_step4/zero_pp_rank_1_mp_rank_00_model_states.pt",
                                 "trainer_state.json", "global_step4/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt",
                                 "global_step4/zero_pp_rank_0_mp_rank_00_optim_states.pt"]
