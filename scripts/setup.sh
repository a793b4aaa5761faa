#!/usr/bin/env bash
# One-time setup on a fresh Debian machine: system packages for the test cluster and the web test, then Python deps.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
# slurmctld slurmd slurm-client munge: the real Slurm test cluster (tests/cluster/slurm.py); no daemon starts on install
# jq curl: the Slack notify example of cluster.example.toml, run by tests/test_notify.py
for pkg in openssh-server openssh-client rsync iproute2 procps util-linux chromium slurmctld slurmd slurm-client munge \
    jq curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
PY=${PYTHON:-python3}
# torch first and pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
$PY -m pip install -q torch==2.13.0
# the versions the suite last ran green with (scripts/constraints.txt); pyproject.toml keeps the ranges
$PY -m pip install -q -c scripts/constraints.txt -e ".[train,serve,test,docs,dpo,deepspeed,qlora]"
# an editable install is not byte-compiled; every orch command would compile its modules again (~50 ms)
$PY -m compileall -q orchestrator >/dev/null
# a node's env as our users' guides build it (transformers 4.44, no orch): the worker ships with each job and runs
# there too (tests/test_seed_env.py)
bash scripts/seed_env.sh
