#!/usr/bin/env bash
# tests/slurm_smoke/run_smoke.sh - end-to-end check of profiles/slurm on a live
# Slurm (start one with scripts/local-slurm-up.sh). Three checks:
#   1. GPU request: the `train` job was submitted with --gpus=fakegpu:1 and
#      Slurm accounted gres/gpu=1 for it.
#   2. Failure: a rule that fails on purpose makes snakemake exit non-zero and
#      the report names the job's Slurm log, which exists.
#   3. Retry: the running `train` job is scancel'ed by a watcher; with
#      `retries: 1` snakemake resubmits it (attempt 2) and the run completes.
# Exit 0 only if all pass. Set SNAKEMAKE to pick the snakemake binary.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SNAKEMAKE=${SNAKEMAKE:-snakemake}
FAILED=0

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILED=1; }

# Every run is bounded: a Snakemake whose status queries fail can wait forever
# and ignore SIGTERM, hence -k.
sm() {
  timeout -k 30 600 "$SNAKEMAKE" --directory "$HERE" --snakefile "$HERE/Snakefile" \
    --profile "$ROOT/profiles/slurm" "$@"
}

# cancel_first_running RULE OUTFILE: wait (max 300 s) until the first Slurm job
# of RULE is RUNNING, let it run 2 s, scancel it, write its id to OUTFILE.
# The plugin submits every job with --comment rule_<rule name>; squeue's %k
# shows it, so this needs no knowledge of Snakemake's job ids.
cancel_first_running() {
  local rule=$1 out=$2 id end=$(( SECONDS + 300 ))
  while [ $SECONDS -lt $end ]; do
    id=$(squeue -h -t RUNNING -o '%i %k' | awk -v c="rule_$rule" '$2 == c { print $1; exit }')
    if [ -n "$id" ]; then
      sleep 2
      scancel "$id" && echo "$id" >"$out"
      return 0
    fi
    sleep 0.5
  done
  return 1
}

scontrol ping 2>/dev/null | grep -q 'is UP' ||
  { echo "Slurm is not up: run scripts/local-slurm-up.sh first" >&2; exit 2; }
cd "$HERE" || exit 1
rm -rf results logs .snakemake ./*.out

# ---- checks 1 and 3: GPU request, scancel -> retry -> success -------------
echo "== run 1: full workflow, train cancelled mid-run (log: $HERE/run1.out)"
cancel_first_running train "$HERE/cancelled.out" &
watcher=$!
t=$SECONDS
# --verbose makes the plugin log its exact sbatch call ("sbatch call: ...").
# train naps 60 s on attempt 1, so an un-cancelled attempt 1 is detectable.
sm --verbose --config train_first_nap=60 >"$HERE/run1.out" 2>&1
rc=$?
wait "$watcher" || fail "watcher never saw a RUNNING train job"
echo "   run 1: rc=$rc in $(( SECONDS - t ))s"
cancelled=$(cat "$HERE/cancelled.out" 2>/dev/null)

[ $rc = 0 ] && pass "workflow completed despite the cancel" || fail "run 1 exited $rc"
grep -q '^attempt=2$' results/trained.txt 2>/dev/null &&
  pass "results/trained.txt was written by attempt 2" ||
  fail "train output not from attempt 2: $(head -n1 results/trained.txt 2>/dev/null)"
grep -q "SLURM-job '$cancelled' failed, SLURM status is: 'CANCELLED'" run1.out &&
  pass "snakemake saw job $cancelled as CANCELLED" || fail "no CANCELLED report for job '$cancelled'"
grep -q 'Trying to restart job' run1.out && pass "snakemake restarted the job" ||
  fail "no 'Trying to restart job' in run1.out"

# Evidence of the GPU request, three independent places:
grep -E 'sbatch call: .*-p gpu.*--gpus=fakegpu:1' run1.out >/dev/null &&
  pass "sbatch call has -p gpu ... --gpus=fakegpu:1" || fail "no sbatch call with --gpus=fakegpu:1"
# The plugin names every Slurm job of a run after the run's UUID.
run_id=$(sed -n 's/^SLURM run ID: //p' run1.out | head -n1)
echo "   sacct for the train jobs of run $run_id (Comment = rule_<name>):"
sacct -X -P -n --name "$run_id" -o JobID,Comment,Partition,State,ReqTRES |
  awk -F'|' '$2 == "rule_train"' | tee "$HERE/sacct_train.out" | sed 's/^/     /'
[ "$(grep -c 'gres/gpu=1' "$HERE/sacct_train.out")" = 2 ] &&
  pass "sacct ReqTRES shows gres/gpu=1 for both train attempts" || fail "sacct ReqTRES lacks gres/gpu=1"
grep -q '|rule_train|gpu|COMPLETED|' "$HERE/sacct_train.out" &&
  pass "sacct: the retried train job COMPLETED" || fail "sacct shows no COMPLETED train job"
grep -q "^$cancelled|rule_train|gpu|CANCELLED" "$HERE/sacct_train.out" &&
  pass "sacct: job $cancelled CANCELLED" || fail "sacct does not show $cancelled CANCELLED"
grep -q 'CUDA_VISIBLE_DEVICES=0' results/trained.txt 2>/dev/null &&
  pass "the job saw CUDA_VISIBLE_DEVICES=0" || fail "no GPU in the job's environment"

# ---- check 2: a failing rule ---------------------------------------------
echo "== run 2: target a rule that fails on purpose (log: $HERE/run2.out)"
t=$SECONDS
sm results/never.txt >"$HERE/run2.out" 2>&1
rc=$?
echo "   run 2: rc=$rc in $(( SECONDS - t ))s"
[ $rc != 0 ] && pass "failing run exited non-zero ($rc)" || fail "failing run exited 0"
grep -q 'Error in rule fail_on_purpose' run2.out && pass "'Error in rule fail_on_purpose' reported" ||
  fail "no 'Error in rule fail_on_purpose'"
slurm_log=$(grep -o '[^ ]*/slurm_logs/rule_fail_on_purpose/[0-9]*\.log' run2.out | tail -n1)
[ -n "$slurm_log" ] && [ -s "$slurm_log" ] && pass "Slurm log named in the report exists: $slurm_log" ||
  fail "no existing Slurm log path in the report"
grep -q 'failing on purpose' run2.out && pass "the rule's own log was shown (show-failed-logs)" ||
  fail "rule log not shown"

[ $FAILED = 0 ] && echo "ALL CHECKS PASSED" || echo "SOME CHECKS FAILED"
exit $FAILED
