"""Resume: a run stopped after a checkpoint and resumed with `resume_from_checkpoint: latest` ends with the same
weights as an uninterrupted run (constant LR): same step, same data order, no replayed batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.orch_cli import demo_project

ROOT = Path(__file__).resolve().parent.parent


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    demo_project(tmp_path / "project")
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "train_resume.py"), str(tmp_path / "project" / "base"),
                           str(tmp_path / "project" / "data" / "train.jsonl"), str(tmp_path / "runs")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stdout + proc.stderr and "checkpoint-6" in proc.stdout + proc.stderr
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["global_step"] == 12
    assert result["moved_since_6"] > 1e-3  # the second half really trained
    assert result["max_diff"] < 1e-5, result
