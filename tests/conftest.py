"""Shared fixtures: a tiny local model (built once per session) and the multi-node test cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.needs import missing

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny random Llama (hidden 64, 2 layers) and a locally trained ChatML tokenizer."""
    from orchestrator.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tokenizer(tiny_model: Path):
    """The tiny model's tokenizer, loaded once (tests read it, never change it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture
def orch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated $ORCH_HOME (job database, run folders) for one test."""
    home = tmp_path / "orch-home"
    monkeypatch.setenv("ORCH_HOME", str(home))
    return home


def _cluster_available() -> str | None:
    """Why the namespace test cluster cannot run here, or None if it can."""
    import shutil

    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("/usr/sbin/sshd", "ssh", "rsync", "ip", "unshare", "nsenter"):
        if not shutil.which(tool) and not os.path.exists(tool):
            return f"{tool} is not installed (scripts/setup.sh installs it)"
    return None


@pytest.fixture(scope="module")
def cluster():
    """A 4-node test cluster (real sshd per node in its own namespaces), torn down after the module."""
    reason = _cluster_available()
    if reason:
        missing(f"the namespace test cluster cannot run: {reason}")
    from tests.cluster.netns import up

    test_cluster = up(4)
    yield test_cluster
    test_cluster.down()


@pytest.fixture
def project(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A user's project folder holding the test job scripts the module names in PROJECT_SCRIPTS."""
    from tests.orch_cli import make_project

    return make_project(tmp_path, *getattr(request.module, "PROJECT_SCRIPTS", ()))


@pytest.fixture
def env(cluster, orch_home: Path) -> dict:
    """Environment pointing orch at the test cluster and an isolated state folder."""
    return {"ORCH_CLUSTER": str(cluster.inventory), "ORCH_HOME": str(orch_home)}
