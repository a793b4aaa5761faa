#!/usr/bin/env bash
# Nodes' own Python envs for tests/test_seed_env.py, without orch (the worker ships with each job):
# - .venvs/fm9g: "as the FM9G guide builds it": transformers 4.44.0, accelerate 0.34.0, peft 0.12, with
#   torch==2.13.0 (CPU), versions pinned in scripts/seed_constraints.txt; sentencepiece for the ChatGLM3-like
#   test model (tests/test_chatglm3_envs.py runs it on 4.44);
# - .venvs/tf440: as ChatGLM3-6B / Qwen-7B-Chat v1 users have it: transformers 4.40.2, peft 0.12.0, accelerate 0.34.2
#   and what those model folders import (sentencepiece, tiktoken, einops, transformers_stream_generator), torch==2.13.0
#   (CPU), versions pinned in scripts/seed_tf440_constraints.txt;
# - .venvs/transformers430: this machine's python plus transformers 4.30.0 (too old: the preflight refuses it).
# Idempotent: an env that already matches is kept. Usage: bash scripts/seed_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SEED=${ORCH_SEED_ENV:-.venvs/fm9g}
OLD=${ORCH_OLD_ENV:-.venvs/transformers430}
TF440=${ORCH_TF440_ENV:-.venvs/tf440}

# pinned_versions_hold DIR CONSTRAINTS: every package of CONSTRAINTS that DIR's python has is at the pinned version
# (an install into a seed env, e.g. of orch with its extras, may have upgraded one)
pinned_versions_hold() {
  "$1/bin/python" - "$2" <<'PY'
import sys
from importlib import metadata
for line in open(sys.argv[1]):
    name, _, pinned = line.split("#")[0].strip().partition("==")
    if not name:
        continue
    try:
        found = metadata.version(name)
    except metadata.PackageNotFoundError:
        continue
    if pinned and found.split("+")[0] != pinned:
        sys.exit(f"{name} {found} is not the pinned {pinned}")
PY
}

# seed_env DIR CONSTRAINTS PACKAGE...: a fresh venv at DIR with torch first and pinned (the CPU wheel; an unpinned
# torch would pull a multi-GB CUDA build), then PACKAGEs, all under -c CONSTRAINTS; kept when it already matches.
seed_env() {
  local dir=$1 constraints=$2 start
  shift 2
  if [ -x "$dir/bin/python" ] && cmp -s "$constraints" "$dir/.orch-seed-constraints" && \
      pinned_versions_hold "$dir" "$constraints"; then
    echo "seed env $dir is up to date"
    return
  fi
  start=$(date +%s)
  rm -rf "$dir"
  $PY -m venv "$dir"
  "$dir/bin/pip" install -q -c "$constraints" torch==2.13.0
  "$dir/bin/pip" install -q -c "$constraints" "$@"
  cp "$constraints" "$dir/.orch-seed-constraints"
  echo "seed env $dir built in $(( $(date +%s) - start )) s"
}

seed_env "$SEED" scripts/seed_constraints.txt transformers accelerate peft tokenizers bitsandbytes pyyaml numpy \
  tensorboard sentencepiece
seed_env "$TF440" scripts/seed_tf440_constraints.txt transformers accelerate peft tokenizers sentencepiece tiktoken \
  einops transformers_stream_generator pyyaml numpy tensorboard

if [ -x "$OLD/bin/python" ] && [ -f "$OLD/.orch-transformers-4.30.0" ]; then
  echo "old-transformers env $OLD is up to date"
else
  rm -rf "$OLD"
  $PY -m venv --system-site-packages "$OLD"
  "$OLD/bin/pip" install -q --no-deps transformers==4.30.0
  touch "$OLD/.orch-transformers-4.30.0"
fi
