"""The README is the front page and docs/ is a strict MkDocs site: it builds with no warning, a broken link or a page
missing from nav fails the build, and what the README shows (the two commands, the quickstart's job.yaml, the docs
map) stays true."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.needs import need_module

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` as CI runs it (the material theme must be installed: the `docs` extra)."""
    need_module("mkdocs")
    need_module("material")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=project,
                          env=env, capture_output=True, text=True, timeout=120)


def test_docs_build_strictly(tmp_path):
    done = mkdocs_build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr
    for page in yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]:
        (target,) = page.values()
        built = "index.html" if target == "index.md" else f"{target[:-3]}/index.html"
        assert (tmp_path / "site" / built).is_file(), built


def test_broken_link_or_page_outside_nav_fails_the_build(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", project)
    shutil.copytree(ROOT / "docs", project / "docs")
    (project / "docs" / "orphan.md").write_text("# not in nav\n")
    done = mkdocs_build(project, tmp_path / "site")
    assert done.returncode != 0
    assert "not included in the \"nav\"" in done.stderr and "orphan.md" in done.stderr
    (project / "docs" / "orphan.md").unlink()
    with (project / "docs" / "data.md").open("a") as page:
        page.write("\n[gone](no-such-page.md) and [moved](training.md#no-such-anchor)\n")
    done = mkdocs_build(project, tmp_path / "site")
    assert done.returncode != 0
    assert "no-such-page.md" in done.stderr and "#no-such-anchor" in done.stderr


def test_readme_keeps_the_two_commands_that_ci_runs():
    assert "bash scripts/setup.sh && orch demo" in README
    assert "bash scripts/setup.sh && make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/setup.sh" in ci and "make test" in ci
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:\n\tpython3 -m pytest -q tests$", make, re.M)
    assert re.search(r"^demo:\n\torch demo$", make, re.M)


def test_readme_maps_every_docs_page():
    linked = set(re.findall(r"\]\(docs/([\w/.-]+\.md)\)", README))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert linked <= pages, f"README links to missing docs pages: {sorted(linked - pages)}"
    assert pages - {"index.md"} <= linked, f"docs pages missing from the README's map: {sorted(pages - linked)}"


def test_readme_quickstart_job_yaml_is_a_valid_config(tmp_path, monkeypatch):
    from orchestrator.train.config import load_config

    block = next(b for b in re.findall(r"```yaml\n(.*?)```", README, re.S) if b.startswith("model:"))
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"input": "hi", "output": "hello"}\n')
    (tmp_path / "job.yaml").write_text(block)
    monkeypatch.chdir(tmp_path)
    cfg = load_config("job.yaml", on_controller=True)
    assert (cfg.stage, cfg.finetuning) == ("sft", "lora")
    assert cfg.warnings == []
