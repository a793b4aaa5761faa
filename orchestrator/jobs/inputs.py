"""The files a job names besides its code: data, base model, DeepSpeed config, mixture members, `--sync` paths.

Those inside the project folder travel with the code even when `.gitignore` / `.orchignore` leave them out (data
and checkpoints usually are ignored); those outside it are never copied, so the launch preflight checks that every
node already has them (`/data/models/...` staged on each node or on a shared filesystem). Pure decisions over the
controller's files: no remote I/O here.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path


from orchestrator.errors import OrchError, PlanError
from orchestrator.textio import read_text

MIXTURE_MAX_BYTES = 1 << 20  # a mixture config is small; a bigger .json is a data file, not read here


@dataclass(frozen=True)
class JobInputs:
    """`inside`: project-relative POSIX paths sent with the code; `outside`: absolute paths each node must have,
    mapped to the config key that named them."""

    inside: tuple[str, ...] = ()
    outside: dict[str, str] = field(default_factory=dict)


def job_inputs(command: list[str], sync_paths: list[str], project: Path) -> JobInputs:
    """Inputs of a launch: `--sync` paths, plus the files a training config names when the job runs one."""
    project = project.resolve()
    named: list[tuple[str, str]] = []
    for path in sync_paths:
        if not (project / path).exists():
            raise PlanError(f"--sync {path}: no such file or folder in {project}")
        named.append(("--sync", path))
    if command[:2] == ["-m", "orchestrator.train"] and len(command) > 2:
        found = config_paths(project / command[2], **worker_overrides(command[3:]))
        named += [(f"{command[2]}: {key}", path) for key, path in found]
        named += [(f"{command[2]}: mixture {key}", str(p)) for key, p in mixture_members(found, project)]
    return classify(named, project)


def worker_overrides(words: list[str]) -> dict[str, str]:
    """`--model` / `--data-dir` of a worker command line, as config_paths' keyword arguments."""
    names = {"--model": "model", "--data-dir": "data_dir"}
    return {names[flag]: value for flag, value in zip(words, words[1:]) if flag in names}


def config_paths(config: Path, model: str | None = None, data_dir: str | None = None) -> list[tuple[str, str]]:
    """(key, path) for every path-like value in a training config: model, data.train/eval/test, deepspeed JSON, a
    chat template file. `model` / `data_dir` override the config's (the launch's `--model` / `--data-dir`).
    Relative values resolve against the config's `data_dir` (default: the project folder)."""
    from orchestrator.train.data.templates import TEMPLATE_FILE_SUFFIXES
    from orchestrator.yamlio import load_yaml  # only a launch of a training config reads YAML

    raw = load_yaml(config, PlanError) or {}
    if not isinstance(raw, dict):
        return []
    raw = {**raw, **{k: v for k, v in (("model", model), ("data_dir", data_dir)) if v}}
    base = str(raw.get("data_dir") or ".")
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    glm = raw.get("data_config") if isinstance(raw.get("data_config"), dict) else {}  # the ChatGLM3 layout
    found = [("model", raw.get("model"))]
    for key in ("train", "eval"):  # a path or {path, columns, ...}; one or a list
        value = data.get(key)
        named = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        found += [(f"data.{key}" + (f"[{i}]" if i is not None else ""), p.get("path") if isinstance(p, dict) else p)
                  for i, p in named]
    found += [("data.test", data.get("test"))]
    found += [(f"data_config.{key}", glm.get(key)) for key in ("train_file", "val_file", "test_file")]
    found = [(key, p if base == "." else posixpath.join(base, p)) for key, p in found if isinstance(p, str) and p]
    deepspeed = raw.get("deepspeed")
    if isinstance(deepspeed, str) and deepspeed.endswith(".json"):
        found.append(("deepspeed", deepspeed))
    template = data.get("template")
    if isinstance(template, str) and template.endswith(TEMPLATE_FILE_SUFFIXES):
        found.append(("data.template", template))  # a chat template file, relative to the working directory
    return found


def mixture_members(found: list[tuple[str, str]], project: Path) -> list[tuple[str, Path]]:
    """The data files and transforms of every mixture config (a small JSON list of datasets) among a config's
    paths (`config_paths`)."""
    members = []
    for key, path in found:
        file = project / path
        if not key.startswith("data.") or file.suffix != ".json" or not file.is_file():
            continue
        if file.stat().st_size > MIXTURE_MAX_BYTES:
            continue
        try:
            entries = json.loads(read_text(file, option=False))  # a BOM (saved on Windows) is fine
        except (ValueError, RecursionError, OrchError):
            continue  # the worker reports a broken file with its line; here it is just not a mixture
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "abs_weight" in e for e in entries):
            continue
        for entry in entries:
            for name in ("path", "transforms"):
                if isinstance(entry.get(name), str) and entry[name]:
                    members.append((f"{entry.get('dataset_name', '?')}.{name}", file.parent / entry[name]))
    return members


def classify(named: list[tuple[str, str]], project: Path) -> JobInputs:
    """Split named paths into project-relative ones (that exist here) and absolute ones outside the project.

    A relative path that does not exist here is left to the worker (a hub model id, or a mistake it reports with
    the config's file and key); a relative path that climbs out of the project cannot be placed on the nodes."""
    inside: list[str] = []
    outside: dict[str, str] = {}
    for key, value in named:
        path = Path(value).expanduser()
        absolute = path if path.is_absolute() else (project / path)
        resolved = Path(posixpath.normpath(str(absolute)))
        if resolved == project or project in resolved.parents:
            if resolved.exists():
                rel = resolved.relative_to(project).as_posix()
                if rel not in inside:
                    inside.append(rel)
        elif path.is_absolute():
            outside.setdefault(str(resolved), key)
        elif resolved.exists():
            raise PlanError(f"{key}: {value} is outside the project folder {project}, so it is not sent to the "
                            "nodes; move it into the project or name it by an absolute path every node has")
    return JobInputs(tuple(inside), outside)

