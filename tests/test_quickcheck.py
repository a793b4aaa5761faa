"""The project-tree digest that lets a launch skip rsync: any change a sync could carry changes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.cluster import quickcheck
from orchestrator.cluster.quickcheck import tree_digest


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "model.py").write_text("x = 1\n")
    (root / "train.py").write_text("print('hi')\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def test_an_untouched_tree_keeps_its_digest_and_git_internals_do_not_count(tree: Path):
    before = tree_digest(tree)
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/other\n")
    assert tree_digest(tree) == before


@pytest.mark.parametrize("change", ["edit", "same_size_new_mtime", "add", "remove", "chmod", "ignored_file",
                                    "empty_folder"])
def test_every_change_a_sync_could_carry_changes_the_digest(tree: Path, change: str):
    before = tree_digest(tree)
    target = tree / "src" / "model.py"
    if change == "edit":
        target.write_text("x = 22\n")
    elif change == "same_size_new_mtime":
        target.write_text("x = 2\n")
        os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 1))
    elif change == "add":
        (tree / "src" / "new.py").write_text("")
    elif change == "remove":
        target.unlink()
    elif change == "chmod":
        target.chmod(0o755)
    elif change == "ignored_file":  # ignored files count too: stricter than the sync, never looser
        (tree / ".gitignore").write_text("*.ckpt\n")
        before = tree_digest(tree)
        (tree / "w.ckpt").write_text("weights")
    elif change == "empty_folder":
        (tree / "logs").mkdir()
    assert tree_digest(tree) != before


def test_named_paths_and_filters_are_part_of_the_digest(tree: Path):
    plain = tree_digest(tree)
    assert tree_digest(tree, named=("data/train.jsonl",)) != plain
    assert tree_digest(tree, filters=("--exclude=x",)) != plain


def test_a_huge_tree_is_left_to_rsync(tree: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(quickcheck, "MAX_ENTRIES", 2)
    assert tree_digest(tree) is None
