#!/usr/bin/env bash
# `labrun --slurm` against a real one-node Slurm cluster (slurm_cluster.sh, started in a temporary
# folder and always stopped): a 4-run sweep of the copy task goes in as one job array of 4 tasks
# and a merge job; once both ended, the experiment's database holds the 4 runs, finished, each with
# train/ and val/ metrics and its run folder beside the database, the task databases are gone, and
# submitting again submits nothing.
# Usage: test_slurm_sweep.sh SOURCE_DIR BUILD_DIR
# Exit codes: 0 passed, 1 failed, 77 skipped (the cluster cannot run here; the reason is printed).
set -uo pipefail

source_dir=${1:?usage: test_slurm_sweep.sh SOURCE_DIR BUILD_DIR}
build_dir=${2:?usage: test_slurm_sweep.sh SOURCE_DIR BUILD_DIR}
source_dir=$(cd "$source_dir" && pwd)
labrun=$(cd "$build_dir" && pwd)/bin/labrun
labdb=$(dirname "$labrun")/labdb
cluster_script=$source_dir/tests/scripts/slurm_cluster.sh
readonly kSkip=77 kWaitSeconds=60
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

[[ -x $labrun && -x $labdb ]] || { echo "FAIL: $labrun or $labdb is not built (make labrun labdb)"; exit 1; }
command -v sqlite3 >/dev/null || { echo "FAIL: sqlite3 is not installed (tools/setup.sh installs it)"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/lab_slurm_XXXXXX") || exit 1
cluster=$work/cluster
cleanup() {
  "$cluster_script" stop "$cluster" >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
started=$SECONDS

reason=$("$cluster_script" start "$cluster" 2>&1 >/dev/null)
status=$?
if [[ $status -ne 0 ]]; then
  if [[ $status -eq $kSkip ]]; then
    echo "skipped: ${reason##*$'\n'}"
    exit "$kSkip"
  fi
  echo "FAIL: slurm_cluster.sh start exited $status: $reason"
  exit 1
fi
export SLURM_CONF=$cluster/slurm.conf
echo "cluster up in $((SECONDS - started)) s ($SLURM_CONF)"

# The experiment's database is given relative to the submitting folder, as users write it.
cd "$work" || exit 1
db=$work/results/sweep.db
args=("$source_dir/experiments/copy.ini" experiment.db=results/sweep.db train.steps=20 train.log_every=10
      train.eval_every=10 task.val_examples=32 --sweep "experiment.seed=1,2" --sweep "train.batch=8,16")

submitted=$("$labrun" "${args[@]}" --slurm 2>&1)
status=$?
echo "\$ labrun copy.ini ... --sweep experiment.seed=1,2 --sweep train.batch=8,16 --slurm"
echo "$submitted"
[[ $status -eq 0 ]] || { echo "FAIL: labrun --slurm exited $status"; exit 1; }
[[ $submitted == *"4 runs; 4 submitted"* ]] || fail "the submission did not submit the 4 runs"
array_job=$(sed -n 's/^array job \([0-9]*\) (--array=0-3,.*/\1/p' <<<"$submitted")
merge_job=$(sed -n 's/^merge job \([0-9]*\) (when job .*/\1/p' <<<"$submitted")
[[ -n $array_job && -n $merge_job ]] || { echo "FAIL: no array job and merge job id in the output"; exit 1; }

# Both jobs leave the queue once ended (squeue lists pending and running jobs only).
deadline=$((SECONDS + kWaitSeconds))
while [[ -n $(squeue --noheader --jobs="$array_job,$merge_job" --format=%i 2>/dev/null) ]]; do
  if ((SECONDS > deadline)); then
    squeue --jobs="$array_job,$merge_job"
    echo "FAIL: the jobs did not end within $kWaitSeconds s; the cluster's logs are in $cluster/log"
    tail -n 20 "$cluster"/log/*.log
    exit 1
  fi
  sleep 0.5
done
merge_state=$(scontrol show job "$merge_job" | grep -o 'JobState=[A-Z]* .*\|ExitCode=[0-9:]*' | tr '\n' ' ')
[[ $merge_state == *"JobState=COMPLETED"*"ExitCode=0:0"* ]] || fail "merge job $merge_job: $merge_state"
for index in 0 1 2 3; do
  log=$work/results/logs/slurm-${array_job}_$index.out
  grep -q "^run 1 ([0-9a-f]*) finished" "$log" 2>/dev/null || fail "task $index did not finish its run: $(tail -n 5 "$log" 2>&1)"
done
merge_log=$work/results/logs/slurm-$merge_job-merge.out
grep -q "merged 4 runs from 4 databases into $db.merging" "$merge_log" ||
  fail "the merge job did not merge the 4 task databases: $(cat "$merge_log")"

query() { sqlite3 -readonly "$db" "$1" 2>&1; }
[[ $(query "SELECT COUNT(*) FROM runs WHERE status = 'finished'") == 4 ]] ||
  fail "$db does not hold 4 finished runs: $(query 'SELECT id, status FROM runs')"
[[ $(query "SELECT COUNT(*) FROM runs WHERE EXISTS (SELECT 1 FROM metrics WHERE run_id = runs.id AND name = 'train/loss')
            AND EXISTS (SELECT 1 FROM metrics WHERE run_id = runs.id AND name LIKE 'val/%')") == 4 ]] ||
  fail "not every run has train/loss and val/ metrics"
[[ $(query "SELECT COUNT(DISTINCT sweep) || ' ' || (SELECT size FROM sweeps) FROM runs") == "1 4" ]] ||
  fail "the runs are not one sweep of 4"
[[ $(query "SELECT COUNT(DISTINCT b.value || '/' || s.value) FROM params AS b JOIN params AS s ON b.run_id = s.run_id
            WHERE b.key = 'train.batch' AND s.key = 'experiment.seed'") == 4 ]] ||
  fail "the runs are not the 4 combinations of train.batch and experiment.seed"
for uid in $(query "SELECT uid FROM runs"); do
  [[ -d $work/results/runs/copy-$uid ]] || fail "run $uid has no folder results/runs/copy-$uid beside the database"
done
leftover=$(ls "$work"/results/sweep.slurm-*.db* 2>/dev/null)
[[ -z $leftover ]] || fail "the task databases of finished runs are still there: $leftover"
echo "\$ labdb --db $db runs"
"$labdb" --db "$db" runs

again=$("$labrun" "${args[@]}" --slurm 2>&1)
status=$?
echo "\$ labrun copy.ini ... --slurm   (again)"
echo "$again"
[[ $status -eq 0 && $again == *"all 4 runs already finished"*"nothing submitted"* ]] ||
  fail "the second submission did not say that nothing is left (exit $status)"
[[ -z $(squeue --noheader --format=%i) ]] || fail "the second submission queued jobs: $(squeue)"

echo "wall time $((SECONDS - started)) s"
[[ $failures -eq 0 ]] || exit 1
echo "slurm sweep: 4 runs in job array $array_job, merged by job $merge_job"
