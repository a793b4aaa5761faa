"""What both test clusters (SSH in namespaces, Slurm) keep under their temp folder `root`."""

from __future__ import annotations

from pathlib import Path


class ClusterFolder:
    """Paths under `self.root`: the workdir the nodes use and the inventory orch reads."""

    root: Path

    @property
    def workdir(self) -> Path:
        return self.root / "workdir"

    @property
    def inventory(self) -> Path:
        return self.root / "cluster.toml"
