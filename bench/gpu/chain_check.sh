#!/bin/bash
# Issue 14/15: each decoder layer's kernels as one launch of ticketed stages (cuda_chain).
#   1. tests/test_kernel_sequence.py on the GPU: GPT-2 and Llama decode layers and a prefill
#      chain as one sequence plan against their separate plans, 1000 runs each on the same
#      buffers (bit-identical outputs and caches, semaphores back at zero every run).
#   2. Batch 1 / prompt 128 generation, $BASELINE (Kiln's default kernels) against $CHAIN
#      (--kiln-variant chain; .device/genchain unless set), two rounds, then one profile of each;
#      $OTHER (a folder of default-variant artifacts from another commit) and $PREFETCHED
#      (--kiln-variant chainpf: the chain with weights prefetched into L2), if set, each round.
#   The check of step 1 runs twice: the plain sequences, then with --prefetch.
#   here:  python -m bench.generate --models gpt2,llama --batch 1 --prompt 128 --new 64 \
#              --device cuda --dtype float16 --kiln-variant chain --prepare-kiln .device/genchain
#          (and --kiln-variant kernels / chainpf into .device/gen2kernels / .device/gen2chainpf)
#   there (carry the folders named and .device/wheels):
#          BASELINE=.device/gen2kernels CHAIN=.device/gen2chain PREFETCHED=.device/gen2chainpf \
#              bash bench/gpu/chain_check.sh $OUT
#          (RUNS=, ROUNDS=, PROFILE=0, SEQUENCE=0: fewer runs of the check, fewer rounds, no
#          profiles, no step 1)
out=$1
source bench/gpu/device_env.sh
if ! python3 -c "import pytest" 2>/dev/null; then  # the test module decorates with pytest.mark
    mkdir -p /tmp/stub
    printf 'class _Mark:\n    def __getattr__(self, name):\n        return lambda *a, **k: (lambda f: f)\nmark = _Mark()\n' > /tmp/stub/pytest.py
    export PYTHONPATH=/tmp/stub:$PYTHONPATH
fi
if [ "${SEQUENCE:-1}" = 1 ]; then
timeout 200 python3 tests/test_kernel_sequence.py gpt2 llama prefill --device cuda --mode aot \
    --runs "${RUNS:-1000}" > "$out/sequence-cuda.jsonl"
echo "sequence rc=$?"
timeout 200 python3 tests/test_kernel_sequence.py gpt2 llama prefill --device cuda --mode aot \
    --runs "${RUNS:-1000}" --prefetch >> "$out/sequence-cuda.jsonl"
echo "sequence (prefetch) rc=$?"
python3 - "$out/sequence-cuda.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    bad = [i for i, run in enumerate(r["runs"]) if not all(run.values())]
    print(f"{r['layer']}: {len(r['runs'])} runs, {len(bad)} wrong (first {bad[:5]}), "
          f"finite {r['finite']}, cache written {r['cache_written']}, {r['programs']} programs, "
          f"prefetch {r.get('prefetch', False)}")
PY
elapsed sequence
fi
run() {  # artifacts variant [extra]
    local folder=$1 variant=$2
    shift 2
    timeout 150 python3 -m bench.generate --models gpt2,llama --batch 1 --prompt 128 --new 64 \
        --device cuda --rounds 5 --dtype float16 --kiln-variant "$variant" \
        --kiln-artifacts "$folder" --systems kiln --out "$out/generate-cuda-chain.json" "$@" 2>&1 |
        grep -E "tok/s|gpu_busy|gpu_events|top_gpu|driver_calls_per|Error|error|Traceback"
    elapsed "$variant $folder"
}
chain=${CHAIN:-.device/genchain}
for round in $(seq "${ROUNDS:-2}"); do
    run "$BASELINE" kernels
    [ -n "$OTHER" ] && run "$OTHER" kernels
    run "$chain" chain
    [ -n "$PREFETCHED" ] && run "$PREFETCHED" chainpf
done
if [ "${PROFILE:-1}" = 1 ]; then
    [ -n "$PREFETCHED" ] && run "$PREFETCHED" chainpf --profile
    run "$chain" chain --profile
    run "$BASELINE" kernels --profile
fi
