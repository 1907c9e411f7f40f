#!/usr/bin/env bash
# One prepared GPU session for issue #7, sized for one call of the device tool (its limit is 10
# minutes a call, 15 minutes a session with the machine's start; the parts' limits add up to 9.5
# minutes): numerical checks, a profile of one step per objective at 210m and 1b, then
# throughput rows against the Hugging Face baseline in the same process, with the A/B variants.
# Everything lands in $OUT (default benchmarks/results/latest); each part has its own time limit,
# so a part that hangs or fails costs only its own rows.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_session.sh
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

nvidia-smi --query-gpu=name,memory.total,power.limit,clocks.max.sm --format=csv >"$OUT/nvidia-smi.csv" 2>&1
part gpu-checks 90 env OUT="$OUT/gpu-checks" python3 benchmarks/gpu_checks.py
for spec in 210m:mlm 210m:clm 1b:clm; do
  part "profile-${spec/:/-}" 80 python3 benchmarks/profile_step.py --preset "${spec%:*}" --run "${spec#*:}" \
    --out "$OUT/profile-${spec/:/-}" --trace
done
# After the main rows: document isolation at 210m (plain = same tokens, full attention), the A/B
# variants, then the eager rows of the memory target (the budget skips what does not fit).
EXTRA="210m:mlm-plain,210m:clm-plain,210m:mlm:ce_chunk=16384,210m:clm:ce_chunk=16384"
EXTRA+=",210m:mlm:scope=model,210m:clm:scope=model,610m:mlm:ce_chunk=16384"
EXTRA+=",210m:mlm:eager,210m:clm:eager,610m:mlm:eager,610m:clm:eager,1b:mlm:eager,1b:clm:eager"
part throughput 240 python3 benchmarks/pretrain_throughput.py --presets 210m,610m,1b --runs hf,mlm,clm \
  --extra "$EXTRA" --budget-s 210 --out "$OUT/throughput"
echo "session done after $(($(date +%s) - started))s"
