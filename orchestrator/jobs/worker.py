"""The built-in training worker as a job carries it: its pure-Python code travels in the job folder
(`<job dir>/worker/orchestrator/...`, first on the job's PYTHONPATH), and the preflight checks each node's own ML
stack against the versions the worker supports (`orchestrator.train.requirements`).

So a node needs torch/transformers/peft/... in its env, not orch: the code goes out in the same round trip that
puts the launch scripts in place.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # the `orchestrator` package folder
FOLDER = "worker"  # inside the job folder; holds the `orchestrator` package
# what the worker imports: nothing else from orchestrator (tests/test_seed_env.py checks), plus DeepSpeed presets
SHIPPED = ("__init__.py", "errors.py", "textio.py", "yamlio.py", "train/**/*.py", "templates/deepspeed/*.json")


def runs_worker(command: list[str]) -> bool:
    """Whether a job's command is the built-in worker (`-m orchestrator.train CONFIG`)."""
    return command[:2] == ["-m", "orchestrator.train"]


@lru_cache(maxsize=1)
def code_files() -> dict[str, tuple[bytes, int]]:
    """`{path in the job folder: (bytes, mode)}` of the worker's code, read once per process."""
    files = {}
    for pattern in SHIPPED:
        for path in sorted(PACKAGE.glob(pattern)):
            if "__pycache__" not in path.parts:
                files[f"{FOLDER}/orchestrator/{path.relative_to(PACKAGE).as_posix()}"] = (path.read_bytes(), 0o600)
    return files


def needed_packages(command: list[str], project: Path) -> dict[str, str] | None:
    """Package -> why, for the training config a worker job runs with its `--model` / `--data-dir` (None for any
    other command)."""
    if not runs_worker(command) or len(command) < 3:
        return None
    from orchestrator.jobs.inputs import worker_overrides
    from orchestrator.train.config import load_config
    from orchestrator.train.requirements import needed

    return needed(load_config(str(project / command[2]), on_controller=True, **worker_overrides(command[3:])))


def model_folders(outside: dict[str, str]) -> tuple[str, ...]:
    """The model folders (as the nodes see them) among a job's inputs outside the project (`JobInputs.outside`),
    whose own code's imports the preflight checks on every node."""
    return tuple(path for path, key in outside.items() if key.endswith(": model"))


def env_problems(facts: list, packages: dict[str, str]) -> list[str]:
    """`node: package version is not supported (...)` lines for every reachable node (doctor.NodeFacts) whose
    env does not fit `packages`, and one line per node whose env lacks packages the model folder's own code
    imports. A missing torch is left to the general check, which reports it already."""
    from orchestrator.train.remote_code import missing_imports_line
    from orchestrator.train.requirements import unmet

    lines = []
    for f in facts:
        if f.reachable and f.versions.get("torch"):
            lines += [f"{f.name}: {line}" for line in unmet(f.versions, packages, has_gpu=bool(f.gpus))]
        if f.reachable:
            lines += [f"{f.name}: {missing_imports_line(folder, missing, 'on this node')}"
                      for folder, missing in f.missing_imports.items()]
    return lines
