"""The worker torchrun starts on each rank: `python -m orchestrator.train CONFIG [--model DIR] [--data-dir DIR]
[--deepspeed PRESET|JSON] [--resume yes|no|STEP|PATH] [--trust-remote-code]`.

A config mistake prints `orch train: error: ...` (naming the key and file) and exits 2 before any model loads.
A failure inside the model folder's own code prints its traceback, then one `orch train: error:` line naming the
file and line of that code (train/code_errors.py), and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from orchestrator.errors import OrchError


def report_error(line: str) -> None:
    """Print LINE on stderr, or, under `orch train` (which prints each distinct line once), write it to this
    rank's file in $ORCH_TRAIN_ERRORS."""
    folder = os.environ.get("ORCH_TRAIN_ERRORS")
    if folder and os.path.isdir(folder):
        with open(os.path.join(folder, f"rank-{os.environ.get('RANK', '0')}"), "w", encoding="utf-8") as out:
            out.write(line + "\n")
        return
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, validate the config, train; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m orchestrator.train", description="The training worker torchrun starts on each rank.")
    parser.add_argument("config", help="training config YAML")
    parser.add_argument("--model", help="base model folder (overrides `model:` in the config)")
    parser.add_argument("--data-dir", help="folder that relative data files resolve against")
    parser.add_argument("--deepspeed", help="DeepSpeed preset or .json (overrides `deepspeed:` in the config)")
    parser.add_argument("--resume", help="yes | no | a step number | a checkpoint (overrides resume_from_checkpoint)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the model folder's own code (sets trust_remote_code: true)")
    ns = parser.parse_args(argv)
    from orchestrator.train.quiet import quiet_third_party

    quiet_third_party()
    try:
        from orchestrator.train.config import load_config
        from orchestrator.train.run import run

        run(load_config(ns.config, model=ns.model, data_dir=ns.data_dir, trust_remote_code=ns.trust_remote_code,
                        deepspeed=ns.deepspeed, resume=ns.resume))
    except OrchError as exc:
        report_error(f"orch train: error: {exc}")
        return 2
    except Exception as exc:  # noqa: BLE001 - only a failure inside the model's own code is summed up here
        from orchestrator.train.code_errors import model_code_failure, print_traceback

        line = model_code_failure(exc)
        if line is None:
            raise
        print_traceback(exc)
        report_error(f"orch train: error: {line}")
        return 1
    return 0


def leave(code: int) -> None:
    """End the worker process with `code` without tearing the interpreter down: Python's exit handlers run
    (logging, multiprocessing, temp files), then `os._exit`. A full teardown destroys torch's C++ objects in
    whatever order finalization reaches them; with a gloo group now and then one still has a live thread and the
    rank dies with "terminate called without an active exception" (SIGABRT) after its work is done and saved."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    leave(main())
