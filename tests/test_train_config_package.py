"""The training config is one package with one face: the rest of orch and the benchmarks import
`orchestrator.train.config` (`load_config` and the schema), never its parts (unit tests may); ChatGLM3's and ms-swift's layouts are
its `foreign/` translations; and the worker a job ships carries the whole package."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import orchestrator.train.config as config
from orchestrator.jobs import worker

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "orchestrator" / "train" / "config"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in `path`, those inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def test_outside_the_package_only_its_face_is_imported():
    reaching_in = []
    for folder in ("orchestrator", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if PACKAGE in path.parents:
                continue
            reaching_in += [f"{path.relative_to(ROOT)}:{line}: {module}" for line, module in _imports(path)
                            if module.startswith("orchestrator.train.config.")
                            and module.removeprefix("orchestrator.train.config.") not in config.__all__]
    assert reaching_in == [], "import orchestrator.train.config instead:\n" + "\n".join(reaching_in)


def test_the_face_is_load_config_and_the_schema():
    schema = importlib.import_module("orchestrator.train.config.schema")  # a part, read here only to compare
    source = (PACKAGE / "schema.py").read_text()
    defined = {name for name, value in vars(schema).items()
               if getattr(value, "__module__", None) == schema.__name__ or re.search(rf"^{name} = ", source, re.M)}
    assert "TrainConfig" in defined and "DataSection" in defined
    assert set(config.__all__) == defined | {"load_config"}
    assert all(getattr(config, name) is getattr(schema, name) for name in defined)
    assert config.load_config.__module__ == "orchestrator.train.config.load"


def test_the_foreign_layouts_sit_side_by_side_and_ship_with_the_worker():
    foreign = sorted(p.name for p in (PACKAGE / "foreign").glob("*.py"))
    assert foreign == ["__init__.py", "chatglm3.py", "swift.py"]
    shipped = {name.split("/orchestrator/", 1)[1] for name in worker.code_files()}
    on_disk = {p.relative_to(ROOT / "orchestrator").as_posix() for p in PACKAGE.rglob("*.py")}
    assert on_disk <= shipped
