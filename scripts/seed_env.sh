#!/usr/bin/env bash
# Nodes' own Python envs for tests/test_seed_env.py, without orch (the worker ships with each job):
# - .venvs/fm9g: "as the FM9G guide builds it": transformers 4.44.0, accelerate 0.34.0, peft 0.12, with
#   torch==2.13.0 (CPU), versions pinned in scripts/seed_constraints.txt;
# - .venvs/transformers430: this machine's python plus transformers 4.30.0 (too old: the preflight refuses it).
# Idempotent: an env that already matches is kept. Usage: bash scripts/seed_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SEED=${ORCH_SEED_ENV:-.venvs/fm9g}
OLD=${ORCH_OLD_ENV:-.venvs/transformers430}

if [ -x "$SEED/bin/python" ] && cmp -s scripts/seed_constraints.txt "$SEED/.orch-seed-constraints"; then
  echo "seed env $SEED is up to date"
else
  start=$(date +%s)
  rm -rf "$SEED"
  $PY -m venv "$SEED"
  # torch first and pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
  "$SEED/bin/pip" install -q -c scripts/seed_constraints.txt torch==2.13.0
  "$SEED/bin/pip" install -q -c scripts/seed_constraints.txt transformers accelerate peft tokenizers bitsandbytes \
    pyyaml numpy tensorboard
  cp scripts/seed_constraints.txt "$SEED/.orch-seed-constraints"
  echo "seed env $SEED built in $(( $(date +%s) - start )) s"
fi

if [ -x "$OLD/bin/python" ] && [ -f "$OLD/.orch-transformers-4.30.0" ]; then
  echo "old-transformers env $OLD is up to date"
else
  rm -rf "$OLD"
  $PY -m venv --system-site-packages "$OLD"
  "$OLD/bin/pip" install -q --no-deps transformers==4.30.0
  touch "$OLD/.orch-transformers-4.30.0"
fi
