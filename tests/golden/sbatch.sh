#!/usr/bin/env bash
# orch job 20260101-000000-0001 on Slurm: 2 node(s) x 2 process(es). Rendered by orch; do not edit.
# submitted as: sbatch --job-name=orch-20260101-000000-0001 --nodes=2 --ntasks-per-node=1 --output=/shared/orch/jobs/20260101-000000-0001/sbatch.log --parsable --nodelist=a1,a2 --partition=gpu --time=1:00:00 --gpus-per-node=2 /shared/orch/jobs/20260101-000000-0001/sbatch.sh
ROOT=/shared/orch/jobs/20260101-000000-0001
# rank order: the order of `--nodes` when names were given, else the order Slurm lists the allocation in
ORDER='a1 a2'
echo "$ORDER" > "$ROOT/order"
set -- $ORDER
export MASTER_ADDR=$1
# one port per job, derived from its id (a second job on the same master gets another)
export MASTER_PORT=$(( 20000 + SLURM_JOB_ID % 40000 ))
echo "$MASTER_ADDR:$MASTER_PORT" > "$ROOT/master"
# one task per node, each running the same per-node wrapper as the SSH path (slurm_task.sh -> rank-N/launch.sh);
# a task exiting non-zero ends every other one (the workers' own exit codes are in rank-N/exit_code)
exec srun --kill-on-bad-exit=1 --nodes=2 --ntasks=2 --ntasks-per-node=1 --output=none \
  bash "$ROOT/slurm_task.sh"
