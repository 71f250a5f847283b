"""Dispatches per transformer layer with Kiln's raising passes off and on (docs/fusion.md).

    python -m bench.dispatches      # markdown: the table, then the dispatch names of one layer

Per layer = dispatches of the 2-layer model minus those of the 1-layer model, the measure of
kiln.dispatches.dispatches_per_layer (iree-compile --compile-to=flow, CPU target). The models are
the tiny ones of kiln.examples.tiny, the "off"/"on"/"on-fused" options
kiln.dispatches.RAISING_CONFIGS; tests/test_fusion.py pins the numbers.
"""

from __future__ import annotations

import kiln
from kiln.dispatches import RAISING_CONFIGS, TARGET_PER_LAYER, count_dispatches
from kiln.examples import tiny

LABELS = {"gpt2": "GPT-2 (GPT2LMHeadModel)", "llama": "Llama (LlamaForCausalLM, GQA 4/2)",
          "bert": "BERT (BertModel)"}


def layer_names(one: tuple, two: tuple) -> tuple:
    """The names one more layer adds: the window w with two == one[:p] + w + one[p:], smallest
    p (so it starts at the norm that feeds the layer's attention)."""
    n = len(two) - len(one)
    for p in range(len(one) + 1):
        if two[:p] == one[:p] and two[p + n:] == one[p:]:
            return two[p:p + n]
    raise ValueError("the 2-layer model is not the 1-layer model with one more layer")


def measure(name: str, config: str):
    counts = [count_dispatches(kiln.compile_to_vmfb(
                  tiny.hf_model(name, layers), (tiny.token_ids(),), target="cpu",
                  compile_to="iree-input", **RAISING_CONFIGS[config]))
              for layers in (1, 2)]
    return counts[1].count - counts[0].count, layer_names(counts[0].names, counts[1].names)


def main() -> None:
    results = {(name, config): measure(name, config)
               for name in tiny.HF_FAMILIES for config in RAISING_CONFIGS}
    print("| model | " + " | ".join(f"passes {c}" for c in RAISING_CONFIGS) + " | target |")
    print("|---" * (len(RAISING_CONFIGS) + 2) + "|")
    for name in tiny.HF_FAMILIES:
        counts = (str(results[(name, c)][0]) for c in RAISING_CONFIGS)
        print(f"| {LABELS[name]} | " + " | ".join(counts) +
              f" | ≤ {TARGET_PER_LAYER} |")
    for config in RAISING_CONFIGS:
        print(f"\nDispatches of one layer, passes {config}:")
        for name in tiny.HF_FAMILIES:
            print(f"\n{LABELS[name]}:\n")
            print("\n".join(f"{i}. `{n}`" for i, n in enumerate(results[(name, config)][1], 1)))


if __name__ == "__main__":
    main()
