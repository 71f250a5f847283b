#!/bin/bash
# Issue 15's decode loop on the GPU (kiln.decode_loop), two device calls:
#   phase b1:     the kernels' GPU selfcheck, the tiny generators' tokens (loop and per-step
#                 against transformers), then batch 1, prompt 128, 64 new tokens: Kiln's greedy
#                 steps in the device loop ("kiln", profiled: CUPTI per token) and one decode call
#                 per token ("kiln-steps"), same artifact, then transformers eager and
#                 static-compile, each model's systems in one process, f16.
#   phase shapes: batch 8 / prompt 128 and batch 1 / prompt 512: kiln, kiln-steps and
#                 static-compile.
#   phase streams: the same cells with Kiln on IREE's CUDA streams (--cuda-submission streams)
#                 and the peers again, same call.
#
#   here:  for s in "1 128" "8 128" "1 512"; do set -- $s; python -m bench.generate \
#              --models gpt2,llama --batch $1 --prompt $2 --new 64 --device cuda \
#              --dtype float16 --kiln-variant kernels --prepare-kiln .device/gencuda; done
#          python -m bench.gpu.generate_variants prepare --out .device/genvar --only \
#              gpt2-f32-nokernels gpt2-f16-kernels gpt2-f16-kernels-sm80 llama-f16-nokernels \
#              llama-f16-kernels
#          <iree-base-runtime 3.13.0 cp312, transformers 5.24.0, regex wheels> in .device/wheels
#   there (carry .device/gencuda .device/genvar .device/wheels):
#          bash bench/gpu/generation_loop.sh $OUT b1      then      ... $OUT shapes / streams
out=$1
phase=$2
source bench/gpu/device_env.sh
run() {  # batch prompt systems [extra args]
    local batch=$1 prompt=$2 systems=$3
    shift 3
    python3 -m bench.generate --models gpt2,llama --batch "$batch" --prompt "$prompt" \
        --new 64 --device cuda --rounds 3 --dtype float16 --kiln-variant kernels \
        --kiln-artifacts .device/gencuda --systems "$systems" \
        --out "$out/generate-cuda-loop.json" "$@" 2>&1 | grep -E "tok/s|gpu_busy|gpu_events|Error"
}
if [ "$phase" = b1 ]; then
    timeout 120 python3 -m kiln.kernels.selfcheck --device cuda --mode aot 2>&1 | tail -8
    elapsed selfcheck
    timeout 150 python3 -m bench.gpu.generate_variants check --artifacts .device/genvar \
        --out "$out" 2>&1 | grep -v Warning | cut -c1-200
    elapsed variants
    run 1 128 kiln,kiln-steps --profile
    elapsed kiln
    run 1 128 eager,static-compile
    elapsed peers
elif [ "$phase" = streams ]; then  # Kiln with IREE's CUDA streams instead of graphs
    run 1 128 kiln,kiln-steps --cuda-submission streams
    run 1 128 eager,static-compile
    elapsed b1
    run 8 128 kiln --cuda-submission streams
    run 8 128 static-compile
    elapsed b8
    run 1 512 kiln --cuda-submission streams
    run 1 512 static-compile
    elapsed p512
else
    run 8 128 kiln,kiln-steps,static-compile
    elapsed b8
    run 1 512 kiln,kiln-steps,static-compile
    elapsed p512
fi
python3 -m bench.generate --agreement "$out/generate-cuda-loop.json" | cut -c1-200
