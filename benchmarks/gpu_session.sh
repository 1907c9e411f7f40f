#!/usr/bin/env bash
# One prepared GPU session for issue #7, sized for one call of the device tool (its limit is 10
# minutes a call, 15 minutes a session with the machine's start; the parts stop within 560 s):
# numerical checks, a profile of one step at 210m (MLM) and 1b (CLM), then throughput rows
# against the Hugging Face baseline in the same process, with the A/B variants.
# Everything lands in $OUT (default benchmarks/results/latest); each part has its own time limit,
# so a part that hangs or fails costs only its own rows.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_session.sh
#
# Environment knobs, so a shorter call can run a subset (defaults: the full session):
#   BUDGET_S (560) the parts' total; CHECKS_S (90; 0 skips gpu_checks.py); PROFILES ("210m:mlm
#   1b:clm"; the first gets a Chrome trace) and PROFILE_S (60 each; they took 27-36 s on an H100);
#   PRESETS/RUNS/EXTRA of the throughput part (pretrain_throughput.py's --presets/--runs/--extra).
# The device tool returns at most 8 files, so everything but the Chrome trace is packed into
# $OUT/session.tar.gz at the end, and the Markdown summaries are printed last.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/latest}
mkdir -p "$OUT"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
started=$(date +%s)
if ! command -v nvidia-smi >/dev/null; then
  echo "gpu_session.sh: no nvidia-smi here; this script sizes its runs for an H100 (use the Python scripts on a CPU)" >&2
  exit 2
fi

part() {  # part NAME SECONDS COMMAND...: runs, logs to $OUT/NAME.log, never stops the session
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s, t=$(($(date +%s) - started))s)"
  timeout --signal=INT --kill-after=15 "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "   exit $? after $(($(date +%s) - started))s"
  tail -n 3 "$OUT/$name.log"
}

BUDGET_S=${BUDGET_S:-560}
CHECKS_S=${CHECKS_S:-90}
PROFILES=${PROFILES-210m:mlm 1b:clm}
PROFILE_S=${PROFILE_S:-60}
nvidia-smi --query-gpu=name,memory.total,power.limit,clocks.max.sm --format=csv >"$OUT/nvidia-smi.csv" 2>&1
[ "$CHECKS_S" -gt 0 ] && part gpu-checks "$CHECKS_S" env OUT="$OUT/gpu-checks" python3 benchmarks/gpu_checks.py
first=1
for spec in $PROFILES; do
  trace=()  # one Chrome trace (gzip) is enough to read; a 1b one may exceed what a device call returns
  [ $first = 1 ] && trace=(--trace)
  first=0
  part "profile-${spec/:/-}" "$PROFILE_S" python3 benchmarks/profile_step.py --preset "${spec%:*}" --run "${spec#*:}" \
    --out "$OUT/profile-${spec/:/-}" "${trace[@]}"
done
# Throughput gets what the checks and profiles left of the budget. Order: what is read first,
# first (210m baseline and the RoPE-backward A/B, then 610m and 1b against their HF baselines,
# then other A/B rows and the eager rows of the memory target); the budget skips the tail rather
# than overrunning the call.
if [ -z "${EXTRA+set}" ]; then
EXTRA="210m:mlm:cat_inputs=2,210m:clm:cat_inputs=2,210m:mlm-plain,210m:clm-plain"
EXTRA+=",610m:hf,610m:mlm,610m:clm,1b:hf,1b:mlm,1b:clm,1b:clm:cat_inputs=2"
EXTRA+=",210m:mlm:scope=model,210m:mlm:residual=bf16"
EXTRA+=",210m:mlm:eager,210m:clm:eager,610m:mlm:eager,610m:clm:eager,1b:mlm:eager,1b:clm:eager"
fi
left=$((BUDGET_S - ($(date +%s) - started)))
part throughput "$left" python3 benchmarks/pretrain_throughput.py --presets "${PRESETS:-210m}" \
  --runs "${RUNS:-hf,mlm,clm}" --extra "$EXTRA" --budget-s $((left * 8 / 10)) --out "$OUT/throughput"
echo "session done after $(($(date +%s) - started))s"

# At most 8 files come back from a device call: pack everything except the trace.
bundle=$(mktemp -d)
find "$OUT" -name '*.json.gz' -exec mv {} "$bundle/" \;
tar -czf "$bundle/session.tar.gz" -C "$OUT" .
for summary in "$OUT"/profile-*/profile.md "$OUT"/throughput/throughput.md; do
  [ -f "$summary" ] && { echo; echo "#### $summary"; cat "$summary"; }
done
rm -rf "${OUT:?}"/*
mv "$bundle"/* "$OUT/"
