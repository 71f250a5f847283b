#!/bin/bash
# Issue 15: the decode loop with the host's queue waits released (compile option
# pipeline_loops, kiln.queue_waits) against the same loop as IREE schedules it, same commit;
# each variant in its own process, static-compile as the peer.
#   phase b1:     batch 1, prompt 128: kernels and pipelined (profiled), pipelined with IREE's
#                 stream-ordered allocations, kernels again, then eager and static-compile.
#   phase shapes: batch 8 / prompt 128 and batch 1 / prompt 512: kernels, pipelined,
#                 static-compile; then the stream-ordered allocations run unfiltered.
#   phase splitk: with pipelining on by default, batch 1 / prompt 128 with split-K GEMMs
#                 (kernels) and without (nosplitk), profiled, twice (nothing else: device time); artifacts in $ARTIFACTS
#                 (prepared with --kiln-variant kernels,nosplitk --prepare-kiln $ARTIFACTS);
#                 with $SUITE_ARTIFACTS, single calls of three suite cells with split-K on and off
#                 (python -m bench.run_suite --device cuda --prepare-only --out $SUITE_ARTIFACTS
#                 --cells gpt2-decode:1:f16,llama:1:f16,qwen2:1:f16
#                 --systems kiln+kernels,kiln+kernels-nosplitk).
#   phase alloc:  batch 1 / prompt 128 (artifacts in $ARTIFACTS): generators on IREE's CUDA
#                 device (--no-allocators) against one with IREE's caching allocator (Kiln's
#                 generator default since: released buffers kept for reuse, no cuMemFree),
#                 profiled with the host's driver calls.
#   phase join:   batch 1 / prompt 128: artifacts whose decode steps chain through fence joins
#                 ($ARTIFACTS, kiln.queue_waits) against ones chained through barriers
#                 ($BARRIERS, compiled before), each with Kiln's default CUDA device and with
#                 the caching allocator, two rounds; then one profile.
#   phase peers:  batch 1 / prompt 128: Kiln's artifacts in $ARTIFACTS with today's runtime
#                 defaults, then eager and static-compile, then Kiln again.
#   phase forward: single calls of three suite cells ($SUITE_ARTIFACTS) on IREE's CUDA device,
#                 with the caching allocator (KILN_CUDA_ALLOCATORS=caching: results reach torch
#                 as copies), and again; reduce-overhead as the peer.
#   phase reduce: the kernels' selfcheck on the GPU (split-K reduce and split-KV merge in the
#                 kernel included), the greedy token's artifacts ($GREEDY, greedy_check), then
#                 batch 1 / prompt 128: $BASELINE (split-K reduce launched), $SPLITK (reduced in
#                 the GEMM) and $ARTIFACTS (also the greedy token in chunks), in turn, two
#                 rounds; one profile; eager and static-compile. The variants come from
#                 worktrees with kiln.kernels.plan.SPLITS_REDUCED_IN_KERNEL (and the CUDA
#                 generator's greedy_chunk in kiln/generate.py) set each way: the compile
#                 cache keys on Kiln's sources, so each gets its own artifacts. With $CHAIN:
#                 artifacts of --kiln-variant chain (each layer's kernels as one launch), two
#                 more runs. PEERS=0 leaves out eager and static-compile.
#   phase gaps:   batch 1 / prompt 128 (artifacts in $ARTIFACTS): profiled, with the
#                 operations around the GPU's long gaps; CUDA graphs instead of streams.
#   here:  for s in "1 128" "8 128" "1 512"; do set -- $s; python -m bench.generate \
#              --models gpt2,llama --batch $1 --prompt $2 --new 64 --device cuda \
#              --dtype float16 --kiln-variant kernels,pipelined --prepare-kiln .device/genpipe; done
#          <iree-base-runtime 3.13.0 cp312, transformers 5.24.0, regex wheels> in .device/wheels
#   there (carry .device/genpipe .device/wheels): bash bench/gpu/pipelined_loop.sh $OUT b1|shapes
out=$1
phase=$2
artifacts=${ARTIFACTS:-.device/genpipe}
source bench/gpu/device_env.sh
run() {  # batch prompt variant systems [extra args]
    local batch=$1 prompt=$2 variant=$3 systems=$4
    shift 4
    timeout 200 python3 -m bench.generate --models gpt2,llama --batch "$batch" \
        --prompt "$prompt" --new 64 --device cuda --rounds 5 --dtype float16 \
        --kiln-variant "$variant" --kiln-artifacts "$artifacts" --systems "$systems" \
        --out "$out/generate-cuda-pipelined.json" "$@" 2>&1 |
        grep -E "tok/s|gpu_|gaps_|driver_|Error|error|Traceback"
    elapsed "b$batch p$prompt $variant $systems"
}
async="--cuda_use_streams=true --cuda_tracing=0 --cuda_async_allocations=true"
if [ "$phase" = splitk ]; then
    for round in 1 2; do
        run 1 128 kernels kiln --profile
        run 1 128 nosplitk kiln --profile
    done
    if [ -n "$SUITE_ARTIFACTS" ]; then  # single calls: split-K on / off, and the peer
        timeout 280 python3 -m bench.run_suite --device cuda --artifacts "$SUITE_ARTIFACTS" \
            --cells gpt2-decode:1:f16,llama:1:f16,qwen2:1:f16 --lanes 3 \
            --systems kiln+kernels,kiln+kernels-nosplitk,torch.compile:reduce-overhead \
            --out "$out/suite-cuda-splitk.json" 2>&1 | tail -25
        elapsed suite
    fi
elif [ "$phase" = alloc ]; then  # IREE's caching allocator: no cuMemFree per step or call
    run 1 128 kernels kiln --profile --no-allocators
    run 1 128 kernels kiln --profile
    run 1 128 kernels kiln
    run 1 128 kernels kiln --no-allocators
elif [ "$phase" = join ]; then  # decode steps without barriers ($ARTIFACTS) vs with ($BARRIERS)
    for round in 1 2; do
        artifacts=$BARRIERS run 1 128 kernels kiln --no-allocators
        run 1 128 kernels kiln --no-allocators
        run 1 128 kernels kiln
        artifacts=$BARRIERS run 1 128 kernels kiln
    done
    run 1 128 kernels kiln --profile
elif [ "$phase" = peers ]; then  # today's default against the peers, same machine, one call
    run 1 128 kernels kiln
    run 1 128 kernels eager,static-compile
    run 1 128 kernels kiln
elif [ "$phase" = reduce ]; then  # split-K reduced in the GEMM ($ARTIFACTS) vs launched
    timeout 150 python3 -m kiln.kernels.selfcheck --device cuda --mode aot > "$out/selfcheck.jsonl"
    echo "selfcheck rc=$? cases $(wc -l < "$out/selfcheck.jsonl") failed $(grep -c '"ok": false' "$out/selfcheck.jsonl")"
    elapsed selfcheck
    [ -n "$GREEDY" ] && timeout 60 python3 -m bench.gpu.greedy_check check --artifacts "$GREEDY" | tail -3
    for round in 1 2; do
        artifacts=$BASELINE run 1 128 kernels kiln
        [ -n "$SPLITK" ] && artifacts=$SPLITK run 1 128 kernels kiln
        run 1 128 kernels kiln
    done
    run 1 128 kernels kiln --profile
    [ -n "$CHAIN" ] && for round in 1 2; do  # each layer's kernels as one launch
        artifacts=$CHAIN run 1 128 chain kiln
    done
    [ "${PEERS:-1}" = 1 ] && run 1 128 kernels eager,static-compile
elif [ "$phase" = forward ]; then  # single calls: IREE's device vs the caching allocator
    suite() {  # systems, results file
        timeout 250 python3 -m bench.run_suite --device cuda --artifacts "$SUITE_ARTIFACTS" \
            --cells gpt2-decode:1:f16,llama:1:f16,qwen2:1:f16 --lanes 3 --systems "$1" \
            --out "$out/$2" 2>&1 | grep -E " ms \(|rror"
        elapsed "suite $2"
    }
    suite kiln+kernels,torch.compile:reduce-overhead suite-forward-default.json
    KILN_CUDA_ALLOCATORS=caching suite kiln+kernels suite-forward-caching.json
    suite kiln+kernels suite-forward-default-again.json
elif [ "$phase" = gaps ]; then  # where GPT-2's step idles the GPU; streams vs graphs
    run 1 128 kernels kiln --profile
    graphs="--cuda_use_streams=false --cuda_tracing=0 --cuda_async_allocations=false"
    KILN_CUDA_FLAGS="$graphs" run 1 128 kernels kiln
    KILN_CUDA_FLAGS="$graphs" run 1 128 kernels kiln --profile
    run 1 128 kernels kiln
elif [ "$phase" = b1 ]; then
    run 1 128 kernels kiln --profile
    run 1 128 pipelined kiln --profile
    KILN_CUDA_FLAGS="$async" run 1 128 pipelined kiln
    run 1 128 kernels kiln
    run 1 128 kernels eager,static-compile
else
    for shape in "8 128" "1 512"; do
        set -- $shape
        run $1 $2 kernels kiln
        run $1 $2 pipelined kiln
        run $1 $2 kernels static-compile
    done
    KILN_CUDA_FLAGS="$async" timeout 120 python3 -m bench.generate --models gpt2 --batch 1 \
        --prompt 128 --new 64 --device cuda --rounds 1 --dtype float16 \
        --kiln-variant pipelined --kiln-artifacts .device/genpipe --systems kiln 2>&1 | tail -25
fi
python3 -m bench.generate --agreement "$out/generate-cuda-pipelined.json" | cut -c1-200
