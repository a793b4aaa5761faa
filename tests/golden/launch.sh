#!/usr/bin/env bash
# orch job 20260101-000000-0000: node a2, node_rank 1 of 2. Rendered by orch; do not edit.
JOB_DIR=/srv/orch/jobs/20260101-000000-0000
cd "$JOB_DIR" || exit 97
JOB_DIR=$(pwd)
echo "$$" > pgid
date +%s.%N > started_at
set -a
. ./env.sh
set +a
source /opt/env/activate
# outputs outlive the per-job code snapshot: a relative output_dir of the training worker lands here, so a restart
# (a new job) finds the checkpoints of the attempt before it
ORCH_OUTPUT_ROOT=$(cd && mkdir -p /srv/orch/outputs/proj && cd /srv/orch/outputs/proj && pwd) || exit 96
export ORCH_OUTPUT_ROOT
SHARED_DIR=$JOB_DIR
# the training worker's rank 0 writes progress.json here for `orch status`
export ORCH_JOB_DIR="$JOB_DIR"
# stack dumps on SIGUSR1 for hang reports (see orch_site/sitecustomize.py)
export PYTHONPATH="$SHARED_DIR/orch_site${PYTHONPATH:+:$PYTHONPATH}"
cd "$SHARED_DIR/code" || exit 98
/opt/env/bin/python -m torch.distributed.run \
  --nnodes 2 --node_rank 1 --nproc_per_node 2 \
  --master_addr 10.0.0.1 --master_port 29511 \
  --max_restarts 0 --monitor_interval 0.1 \
  train.py --lr 1e-4
rc=$?
cd "$JOB_DIR"
if [ "$rc" -ne 0 ]; then
  # torchrun exits 1 whatever its workers did: report the first failed worker's own code (signal N -> 128+N)
  worker=$(sed -n 's/^[[:space:]]*exitcode[[:space:]]*:[[:space:]]*\(-\{0,1\}[0-9]\{1,\}\).*/\1/p' log | head -n 1)
  case "$worker" in ''|0) ;; -*) rc=$((128 - worker)) ;; *) rc=$worker ;; esac
fi
date +%s.%N > ended_at
echo "$rc" > exit_code.tmp && mv exit_code.tmp exit_code
exit "$rc"
