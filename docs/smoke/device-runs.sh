#!/usr/bin/env bash
# The runs recorded in docs/smoke/h200-*.json, in one go: from the repository root, on a GPU host whose
# python3 has torch, triton and transformers (no vLLM or FlashInfer needed).  Reports and one log go to $OUT
# (default ./smoke-out); the log has one line per run (name, exit status, PASS/FAIL, failed checks), the
# program's stderr and, last, the GPU tests of tests/test_smoke_program.py.
#
#   OUT=/tmp/smoke bash docs/smoke/device-runs.sh
set -u
OUT=${OUT:-smoke-out}
PY=${PYTHON:-python3}
P=dockerfiles/smoke.py
LOG="$OUT/log.txt"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
unset SMOKE_FAULT

# --expect the versions this host's packages report, NCCL in label form (X.Y.Z-1), as for the H100 runs
VERSIONS=$($PY -c 'import torch, triton, transformers
nccl = ".".join(str(x) for x in torch.cuda.nccl.version())
print(f"cuda={torch.version.cuda} nccl={nccl}-1 torch={torch.__version__.split(chr(43))[0]} "
      f"triton={triton.__version__} transformers={transformers.__version__}")')
EXPECT=()
for kv in $VERSIONS; do EXPECT+=(--expect "$kv"); done
{ echo "host: $(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader | head -1)";
  echo "expect: $VERSIONS"; } | tee "$LOG"

run() {  # run NAME [ENV=VALUE ...] -- ARGS...: the program's report to $OUT/NAME.json
    local name=$1 t0 rc
    shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    t0=$(date +%s)
    echo "=== $name: ${envs[*]} $P $*" >>"$LOG"
    env "${envs[@]}" timeout 150 "$PY" "$P" "$@" >"$OUT/$name.json" 2>>"$LOG"
    rc=$?
    $PY - "$OUT/$name.json" "$name" "$rc" "$(( $(date +%s) - t0 ))" <<'EOF' | tee -a "$LOG"
import json, sys
path, name, rc, secs = sys.argv[1:]
try:
    r = json.load(open(path))
    failed = [c["name"] for c in r["checks"] if not c["ok"]]
    s = r["summary"]
    print(f"{name}: exit {rc}, {'PASS' if r['ok'] else 'FAIL'} ({s['passed']} passed, {s['failed']} failed, "
          f"{s['skipped']} skipped) in {secs}s; failed: {failed or '-'}")
except Exception as e:
    print(f"{name}: exit {rc}, no report ({e})")
EOF
}

run h200-report -- --arch auto "${EXPECT[@]}" --require transformers --nccl-allreduce
run h200-sm90-baseline-report -- --arch sm_90 "${EXPECT[@]}" --require transformers \
    --baseline "$OUT/h200-report.json"
run h200-fault-report SMOKE_FAULT=sdpa_scale -- --arch sm_90 "${EXPECT[@]}" --require transformers
run h200-flash-causal-unavailable-baseline-report SMOKE_FAULT=flash_causal_unavailable -- --arch sm_90 \
    "${EXPECT[@]}" --skip-imports --no-builtin-baseline --baseline "$OUT/h200-report.json"
run h200-flash-unavailable-builtin-report SMOKE_FAULT=flash_unavailable -- --arch auto "${EXPECT[@]}" \
    --skip-imports
run h200-flash-causal-unavailable-unchecked-report SMOKE_FAULT=flash_causal_unavailable -- --arch sm_90 \
    "${EXPECT[@]}" --skip-imports --no-builtin-baseline
run h200-as-sm121-report -- --arch sm_121 "${EXPECT[@]}" --skip-imports

echo "=== pytest tests/test_smoke_program.py" | tee -a "$LOG"
timeout 200 "$PY" -m pytest tests/test_smoke_program.py -q -p no:cacheprovider 2>&1 | tail -n 25 \
    | tee -a "$LOG"
