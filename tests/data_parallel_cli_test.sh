#!/usr/bin/env bash
# Data-parallel training from the command line on CPU ranks (ctest DataParallelMpi.CommandLine):
#   usage: data_parallel_cli_test.sh CXR MPIRUN
# On a tiny synthetic dataset (32x32, DenseNet121): a 2-rank run with --check-replicas every step;
# --resume of it with 1 rank; evaluation on 2 ranks equals 1 rank; a global batch that does not
# divide by the ranks is refused; a rank killed mid-epoch and a rank that hangs end the job within
# the timeout with a message, and last.h5 still loads; SIGTERM to mpirun checkpoints once.
# The environment (ctest's) carries what OpenMPI needs here (tests/CMakeLists.txt).
set -uo pipefail
cxr=$1
mpirun=$2
tmp=$(mktemp -d /tmp/cxr_dp_cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*" >&2; }
mpi() { "$mpirun" -np "$@"; }

"$cxr" synth --out "$tmp/synth" --patients 24 --size 64 --seed 3 >/dev/null || { echo "synth failed" >&2; exit 1; }
"$cxr" prepare --csv "$tmp/synth/Data_Entry_2017_v2020.csv" --images "$tmp/synth/images" --out "$tmp/data.h5" \
  --size 32 --quiet >/dev/null 2>&1 || { echo "prepare failed" >&2; exit 1; }
base=(--data "$tmp/data.h5" --device cpu --lr 1e-3 --seed 5 --log-every 1)
common=("${base[@]}" --batch 8 --max-steps-per-epoch 3)

# 1. Two ranks, replicas compared after every step.
if mpi 2 "$cxr" train "${common[@]}" --out "$tmp/run" --epochs 1 --check-replicas 1 >"$tmp/1.out" 2>&1; then
  grep -q '"ranks":2' "$tmp/run/metrics.jsonl" && ok "2-rank run, replicas identical at every step" ||
    fail "the 2-rank run's epoch line has no ranks: 2"
  [ "$(grep -c 'data parallel: 2 ranks' "$tmp/1.out")" = 1 ] || fail "rank 0 alone should print the set-up line"
else
  fail "2-rank training failed: $(tail -5 "$tmp/1.out")"
fi

# 1b. Which images and flips each step sees does not depend on the number of ranks: the batch logs
# (the global batch of each step, gathered from the ranks) of 2 ranks and of 1 are the same.
mpi 2 "$cxr" train "${common[@]}" --out "$tmp/log2" --epochs 2 --log-batches --quiet >"$tmp/1b.out" 2>&1 ||
  fail "2-rank run with --log-batches failed: $(tail -3 "$tmp/1b.out")"
"$cxr" train "${common[@]}" --out "$tmp/log1" --epochs 2 --log-batches --quiet >"$tmp/1c.out" 2>&1 ||
  fail "1-rank run with --log-batches failed: $(tail -3 "$tmp/1c.out")"
cmp -s "$tmp/log2/batches.jsonl" "$tmp/log1/batches.jsonl" && [ "$(wc -l <"$tmp/log1/batches.jsonl")" = 6 ] &&
  ok "the same images and flips at every step with 2 ranks and with 1" ||
  fail "batch logs differ: $(diff "$tmp/log2/batches.jsonl" "$tmp/log1/batches.jsonl" | head -4)"

# 2. Resume with one rank: the run goes on at step 4 of epoch 2.
if "$cxr" train "${common[@]}" --out "$tmp/run" --epochs 2 --resume --quiet >"$tmp/2.out" 2>&1; then
  python3 - "$tmp/run/metrics.jsonl" <<'PY' && ok "resumed with 1 rank" || fail "resume with 1 rank: wrong log"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
epochs = [l for l in lines if l["type"] == "epoch"]
steps = [l["step"] for l in lines if l["type"] == "step"]
assert [e["epoch"] for e in epochs] == [1, 2], epochs
assert steps == [1, 2, 3, 4, 5, 6], steps
assert "ranks" not in epochs[1]
PY
else
  fail "resume with 1 rank failed: $(tail -5 "$tmp/2.out")"
fi

# 3. Evaluation sharded over 2 ranks equals 1 rank (each image once: the same count and AUCs).
mpi 2 "$cxr" evaluate --weights "$tmp/run/last.h5" --data "$tmp/data.h5" --split train --batch 8 --device cpu --quiet \
  --json >"$tmp/eval2.json" 2>"$tmp/eval2.err" || fail "2-rank evaluate failed: $(tail -3 "$tmp/eval2.err")"
"$cxr" evaluate --weights "$tmp/run/last.h5" --data "$tmp/data.h5" --split train --batch 8 --device cpu --quiet \
  --json >"$tmp/eval1.json" 2>"$tmp/eval1.err" || fail "1-rank evaluate failed"
# AUC is a function of the order of the scores: equal unless two images' logits, which may differ in
# their last bits between a batch of 4 and of 8 (other GEMM shapes), swap places.
python3 - "$tmp/eval1.json" "$tmp/eval2.json" <<'PY' && ok "evaluate on 2 ranks = 1 rank" || fail "evaluate differs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["images"] == b["images"], (a["images"], b["images"])
assert a["auc"].keys() == b["auc"].keys()
for k in a["auc"]:
    assert abs(a["auc"][k] - b["auc"][k]) <= 1e-6, (k, a["auc"][k], b["auc"][k])
PY

# 4. A global batch that does not divide by the ranks.
mpi 2 "$cxr" train "${base[@]}" --batch 7 --out "$tmp/bad" --epochs 1 >"$tmp/4.out" 2>&1 &&
  fail "--batch 7 on 2 ranks was accepted"
grep -q "does not divide by the 2 ranks" "$tmp/4.out" && ok "--batch 7 on 2 ranks refused" ||
  fail "no clear message for --batch 7 on 2 ranks: $(head -3 "$tmp/4.out")"

# 5 and 6: rank 1 meets CXR_FAULT_STEP=8:$1 (io/fault.h) in epoch 3 of a copy of the run, with
# --comm-timeout $2; sets $rc (the job's status) and $took (seconds); the output in $tmp/$1.out.
run_with_fault() {
  cp -r "$tmp/run" "$tmp/$1"
  local start
  start=$(date +%s)
  mpi 1 "$cxr" train "${common[@]}" --out "$tmp/$1" --epochs 3 --resume --comm-timeout "$2" : \
    -np 1 env CXR_FAULT_STEP=8:"$1" "$cxr" train "${common[@]}" --out "$tmp/$1" --epochs 3 --resume \
    --comm-timeout "$2" >"$tmp/$1.out" 2>&1
  rc=$?
  took=$(($(date +%s) - start))
  [ $rc -ne 0 ] || fail "$1: rank 1's fault left the job with status 0"
  [ $took -lt 60 ] || fail "$1: the job took ${took} s (--comm-timeout $2 s)"
  "$cxr" verify "$tmp/$1/last.h5" >/dev/null 2>&1 && ok "$1: last.h5 loads" || fail "$1: last.h5 damaged"
}

# 5. Rank 1 killed at step 8: mpirun ends the job and names rank 1; rank 0, signalled by mpirun while
# it waits for rank 1, names itself and the step.
run_with_fault kill 60
grep -qi "rank 1" "$tmp/kill.out" && ok "killed rank 1: job ended in ${took} s, status $rc, rank named" ||
  fail "the killed rank is not named: $(tail -5 "$tmp/kill.out")"
grep -q "rank 0: step 8: signal received while waiting for" "$tmp/kill.out" && ok "rank 0 named the step it stopped at" ||
  fail "rank 0 did not say where it stopped: $(grep -v '^\s*$' "$tmp/kill.out" | tail -5)"

# 6. Rank 1 hangs at step 8: rank 0 gives up after --comm-timeout 5 s and names the step.
run_with_fault hang 5
grep -q "rank 0: error: step 8: .* did not complete within 5 s" "$tmp/hang.out" &&
  ok "hung rank: rank 0 timed out at step 8 in ${took} s, status $rc" ||
  fail "no timeout message naming the rank and step: $(grep -v '^\s*$' "$tmp/hang.out" | tail -5)"

# 7. A signal to mpirun mid-epoch: every rank finishes its step, rank 0 checkpoints once, all exit.
# SIGUSR1 is forwarded at once; SIGTERM reaches the ranks odls_base_sigkill_timeout seconds later
# (OpenMPI 4 sends SIGCONT, waits, SIGTERM, waits, SIGKILL: README.md), 5 s here.
export OMPI_MCA_odls_base_sigkill_timeout=5
for sig in USR1 TERM; do
  # 500 epochs of 5 steps: still running when the signal comes.
  "$mpirun" -np 2 "$cxr" train "${base[@]}" --batch 8 --out "$tmp/sig$sig" --epochs 500 >"$tmp/7$sig.out" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    [ -f "$tmp/sig$sig/metrics.jsonl" ] && [ "$(grep -c '"type":"step"' "$tmp/sig$sig/metrics.jsonl")" -ge 2 ] && break
    sleep 0.2
  done
  start=$(date +%s)
  kill -$sig $pid
  wait $pid
  rc=$?
  took=$(($(date +%s) - start))
  [ $rc -ne 0 ] || fail "SIG$sig: the job exited 0"
  [ "$(grep -c 'interrupted: saved' "$tmp/7$sig.out")" = 1 ] && ok "SIG$sig to mpirun: one checkpoint, status $rc, ${took} s" ||
    fail "SIG$sig: expected one 'interrupted: saved' line: $(tail -5 "$tmp/7$sig.out")"
  "$cxr" verify "$tmp/sig$sig/last.h5" >/dev/null 2>&1 && ok "last.h5 loads after SIG$sig" ||
    fail "no loadable last.h5 after SIG$sig"
done

[ $failures -eq 0 ] || { echo "$failures check(s) failed" >&2; exit 1; }
echo "all data-parallel command-line checks passed" >&2
