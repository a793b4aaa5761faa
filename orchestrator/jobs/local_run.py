"""`orch train`'s torchrun, run in this process: a worker's one-line error reaches the user as that line and exit 2,
never torchrun's `ChildFailedError` block."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

ERRORS_ENV = "ORCH_TRAIN_ERRORS"  # the folder where each rank writes its `orch train: error: ...` line


def _quiet_torchrun() -> None:
    """torchrun's own log lines (its failure summary, OMP_NUM_THREADS, SIGTERM notices) stay off the screen."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher", "torch.distributed.run")):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _failure_line(failures: dict) -> tuple[str, int]:
    """One line for torchrun's failed ranks (the first by time), and the exit code orch train ends with."""
    rank, failure = min(failures.items(), key=lambda item: item[1].timestamp)
    code = failure.exitcode
    how = f"exit code {code}" if code >= 0 else f"signal {-code}"
    return f"orch train: error: rank {rank} failed with {how} (its output is above)", (code if code > 0 else 1)


def run_local(nproc_per_node: int, worker_args: list[str]) -> int:
    """torchrun --standalone the training worker on this machine; returns the exit code for `orch train`."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc_per_node}",
                                         "-m", "orchestrator.train", *worker_args])
    with tempfile.TemporaryDirectory(prefix="orch-train-") as errors:
        os.environ[ERRORS_ENV] = errors
        import torch.distributed.elastic.multiprocessing.api  # noqa: F401  (its loggers exist before quieting)
        _quiet_torchrun()
        try:
            run(args)
        except ChildFailedError as exc:
            lines = sorted({p.read_text().strip() for p in Path(errors).iterdir()})
            if lines:
                print("\n".join(lines), file=sys.stderr, flush=True)
                return 2
            line, code = _failure_line(exc.failures)
            print(line, file=sys.stderr, flush=True)
            return code
        finally:
            os.environ.pop(ERRORS_ENV, None)
    return 0
