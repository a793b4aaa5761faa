# orch stop of job 20260101-000000-0000 on node a2: TERM the process group, sweep the job tag, then KILL.
# Only processes whose environment holds exactly ORCH_JOB_ID=20260101-000000-0000 are touched.
tag=ORCH_JOB_ID=20260101-000000-0000
job_dir=/srv/orch/jobs/20260101-000000-0000
tagged() {
  for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}; pid=${pid%/environ}
    [ "$pid" = "$$" ] && continue
    grep -qzxF "$tag" "$env" 2>/dev/null || continue
    grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null || echo "$pid"
  done
}
# mark the stop as under way: watchers keep the node RUNNING (not LOST, not final) until the sweep is done
[ -d "$job_dir" ] && date +%s > "$job_dir/stop_started"
pgid=$(cat "$job_dir/pgid" 2>/dev/null)
case "$pgid" in ''|*[!0-9]*) pgid="" ;; esac
# the group id may have been reused after the job ended: only signal it while its leader carries our tag
if [ -n "$pgid" ] && ! grep -qzxF "$tag" "/proc/$pgid/environ" 2>/dev/null; then pgid=""; fi
[ -n "$pgid" ] && kill -TERM -"$pgid" 2>/dev/null
pids=$(tagged)
[ -n "$pids" ] && kill -TERM $pids 2>/dev/null
i=0
while [ "$i" -lt 25 ]; do
  pids=$(tagged)
  [ -z "$pids" ] && break
  sleep 0.2; i=$((i + 1))
done
for round in 1 2 3 4 5 6 7 8 9 10; do
  pids=$(tagged)
  [ -z "$pids" ] && break
  [ -n "$pgid" ] && kill -KILL -"$pgid" 2>/dev/null
  kill -KILL $pids 2>/dev/null
  sleep 0.1
done
left=$(tagged | wc -l)
if [ -d "$job_dir" ]; then
  [ -f "$job_dir/exit_code" ] || date +%s > "$job_dir/stopped_at"
  [ "$left" -eq 0 ] && date +%s > "$job_dir/stop_done"
fi
echo "left=$left"
