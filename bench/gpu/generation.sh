#!/bin/bash
# Issue 15's GPU numbers in one device call: the tiny generators' exactness per kernel option
# (bench/gpu/generate_variants.py), then bench/generate.py on CUDA, every system in its own
# process (an illegal address poisons a CUDA context), rows appended to one JSON file.
#
#   here:  python -m bench.gpu.generate_variants prepare --out .device/genvar
#          python -m bench.generate --models gpt2,llama --batch 1 --prompt 128 --new 64 \
#              --device cuda --dtype float16 --kiln-variant kernels,nofuse,nokernels \
#              --prepare-kiln .device/gencuda        (and the other shapes, kernels only)
#          cp <iree-base-runtime 3.13.0 cp312, transformers 5.24.0, regex wheels> .device/wheels/
#   there: bash bench/gpu/generation.sh $OUT "b1:p128:kernels,nofuse,nokernels:f32" "b8:p128:kernels"
# Each shape is batch:prompt:variants[:f32]; the systems of a shape are Kiln's variants,
# transformers eager in f16 (and f32 with the 4th field, the reference of the f16 agreement
# rate) and transformers' static cache + torch.compile(reduce-overhead).
# Skip the tiny generators with GENVAR=0; PROFILE=1 adds a profiled generate per system
# (bench/generate.py --profile: CUPTI kernels per token, cProfile of the host side).
set -u
out=$1; shift
source bench/gpu/device_env.sh
if [ -d .device/greedy ]; then  # bench/gpu/greedy_check.py prepare --out .device/greedy
    python3 -m bench.gpu.greedy_check check --artifacts .device/greedy
fi
if [ "${GENVAR:-1}" != 0 ]; then
    python3 -m bench.gpu.generate_variants check --artifacts .device/genvar --out "$out"
fi
for shape in "$@"; do
    IFS=: read -r batch prompt variants f32 <<< "$shape"
    common=(--models "${MODELS:-gpt2,llama}" --batch "${batch#b}" --prompt "${prompt#p}" --new 64
            --device cuda --rounds 3 --out "$out/generate-cuda.json")
    for variant in ${variants//,/ }; do
        python3 -m bench.generate "${common[@]}" --dtype float16 --systems kiln \
            --kiln-variant "$variant" --kiln-artifacts .device/gencuda ${PROFILE:+--profile} || echo "kiln[$variant] failed"
    done
    python3 -m bench.generate "${common[@]}" --dtype float16 --systems eager,static-compile ${PROFILE:+--profile} \
        || echo "transformers f16 failed"
    if [ -n "$f32" ]; then
        python3 -m bench.generate "${common[@]}" --dtype float32 --systems eager \
            || echo "transformers f32 failed"
    fi
done
python3 -m bench.generate --agreement "$out/generate-cuda.json"
