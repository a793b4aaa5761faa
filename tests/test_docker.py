"""The worker image installs what pyproject.toml declares (Docker itself is not available on the CI machines)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_installs_the_declared_extras_and_python_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    installed = re.search(r'pip install --no-cache-dir "\.\[([a-z,]+)\]"', dockerfile)
    assert installed, "the Dockerfile must pip install this package with extras"
    assert set(installed.group(1).split(",")) == {"train", "serve", "dpo", "deepspeed", "qlora"} \
        <= set(project["optional-dependencies"])
    minimum = re.match(r">=(\d+)\.(\d+)", project["requires-python"]).groups()
    assert f"sys.version_info >= ({minimum[0]}, {minimum[1]})" in dockerfile
    base_torch = re.search(r"FROM pytorch/pytorch:(\d+)\.(\d+)", dockerfile).groups()
    declared = next(d for d in project["optional-dependencies"]["train"] if d.startswith("torch"))
    floor = re.search(r">=(\d+)\.(\d+)", declared).groups()
    assert tuple(map(int, base_torch)) >= tuple(map(int, floor)), "the base image's torch is below [train]'s range"
