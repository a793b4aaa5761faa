"""`orch train` on this machine: one process runs the worker right here (a world of one, as torchrun would set it up,
without torchrun's agent and a second interpreter importing torch and transformers again); several run under torchrun
in this process. Either way a worker's one-line error reaches the user as that line and exit 2, never torchrun's
`ChildFailedError` block."""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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
    """Run the training worker on this machine; returns the exit code for `orch train`."""
    if nproc_per_node == 1:
        return run_single(worker_args)
    return run_torchrun(nproc_per_node, worker_args)


def _free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for the world-of-one process group's store)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _world_of_one() -> Iterator[None]:
    """The environment torchrun gives its only rank (RANK 0 of 1, a loopback master, a fresh run id), restored
    afterwards."""
    env = {"RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "TORCHELASTIC_RUN_ID": uuid.uuid4().hex}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_single(worker_args: list[str]) -> int:
    """The worker in this process as the only rank; Ctrl-C ends it with exit 130 and one line."""
    from orchestrator.train.__main__ import main

    with _world_of_one():
        try:
            return main(worker_args)
        except KeyboardInterrupt:
            print("orch train: interrupted", file=sys.stderr, flush=True)
            return 130


def run_torchrun(nproc_per_node: int, worker_args: list[str]) -> int:
    """torchrun --standalone the training worker on this machine with `nproc_per_node` ranks."""
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
