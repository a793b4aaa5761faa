"""The worker's step clock on a real torch model and accelerate's data loader: forward, backward and data wait are
told apart, eval forwards are not counted, and the slow-rank failpoint lands in the forward."""

from __future__ import annotations

import time

from tests.needs import need_module

torch = need_module("torch")
accelerate_loader = need_module("accelerate.data_loader")

from orchestrator.train.feed import StepClock, metric_line, slow_rank_seconds  # noqa: E402


class SlowData(torch.utils.data.Dataset):
    """Four samples, each taking 50 ms to read."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        time.sleep(0.05)
        return torch.randn(8)


def test_the_clock_tells_forward_backward_and_data_wait_apart(monkeypatch):
    monkeypatch.setenv("ORCH_FAILPOINT", "slow-rank:1:0.1")
    assert slow_rank_seconds(0) == 0 and slow_rank_seconds(1) == 0.1
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 1))
    clock = StepClock(delay=slow_rank_seconds(1))
    clock.install(model)
    loader = accelerate_loader.DataLoaderShard(SlowData(), batch_size=2)  # as the Trainer prepares it
    clock.time_loader(loader)
    model.train()
    for batch in loader:
        model(batch).sum().backward()
        clock.step_done()
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 8))  # an evaluation: not a training step's compute
    clock.step_done()
    steps = list(clock.recent)
    assert len(steps) == 3
    for forward, backward, wait, tokens, _ in steps[:2]:
        assert 0.1 <= forward < 0.2 and 0 < backward < 0.05 and tokens == 16
    assert 0.2 <= steps[0][2] + steps[1][2] < 0.3  # 4 reads of 50 ms (accelerate reads one batch ahead)
    assert steps[2][:4] == (0.0, 0.0, 0.0, 0)
    summary = clock.summary()
    assert summary["compute_s"] >= 2 * 0.1 / 3 and summary["window"] == 3


def test_a_metric_line_keeps_every_number_logged():
    line = metric_line(20, 0.51234, {"eval_loss": 1.5, "eval_rouge-1": 12.0, "eval_bleu-4": 3.0, "note": "x",
                                     "flag": True, "step": 999})
    assert line["step"] == 20 and line["epoch"] == 0.5123 and "time" in line
    assert {k: line[k] for k in ("eval_loss", "eval_rouge-1", "eval_bleu-4")} == {
        "eval_loss": 1.5, "eval_rouge-1": 12.0, "eval_bleu-4": 3.0}
    assert "note" not in line and "flag" not in line
