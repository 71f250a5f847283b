#!/bin/bash
# Issue 15's GPU A/B in one device call (what produced docs/benchmarks.md "Generation — GPU,
# second run"): the kernels' GPU selfcheck (the decode attention kernel's cache write under
# real concurrency), the tiny generators' tokens per kernel option, then generation at batch 1,
# prompt 128, 64 new tokens: Kiln's artifacts of this commit (profiled: CUPTI kernels per token),
# Kiln's artifacts of an earlier commit (the "before"), transformers eager and static-compile f16.
#
#   here, at the earlier commit:  python -m bench.generate --models gpt2,llama --batch 1 \
#       --prompt 128 --new 64 --device cuda --dtype float16 --kiln-variant kernels \
#       --prepare-kiln .device/gencuda-before
#   here, at this commit:  the same with --prepare-kiln .device/gencuda, and
#       python -m bench.gpu.generate_variants prepare --out .device/genvar
#       cp <iree-base-runtime 3.13.0 cp312, transformers 5.24.0, regex wheels> .device/wheels/
#   there (carry .device/gencuda .device/gencuda-before .device/genvar .device/wheels):
#       bash bench/gpu/generation_ab.sh $OUT
out=$1
source bench/gpu/device_env.sh
timeout 120 python3 -m kiln.kernels.selfcheck --device cuda --mode aot 2>&1 | tail -25
elapsed selfcheck
timeout 150 python3 -m bench.gpu.generate_variants check --artifacts .device/genvar --out "$out" 2>&1 | grep -v Warning | cut -c1-160
elapsed variants
common=(--models gpt2,llama --batch 1 --prompt 128 --new 64 --device cuda --rounds 3)
python3 -m bench.generate "${common[@]}" --dtype float16 --systems kiln --kiln-variant kernels \
    --kiln-artifacts .device/gencuda --profile --out "$out/generate-cuda.json" 2>&1 | grep -E "tok/s|gpu_busy|gpu_events|Error" 
python3 -m bench.generate "${common[@]}" --dtype float16 --systems kiln --kiln-variant kernels \
    --kiln-artifacts .device/gencuda-before --out "$out/generate-cuda-before.json" 2>&1 | grep -E "tok/s|Error"
elapsed kiln
python3 -m bench.generate "${common[@]}" --dtype float16 --systems eager,static-compile \
    --out "$out/generate-cuda.json" 2>&1 | grep -E "tok/s|Error"
elapsed peers
python3 -m bench.generate --agreement "$out/generate-cuda.json"
