"""Dispatches per transformer layer with Kiln's raising passes off and on (docs/fusion.md).

    python bench/dispatches.py      # markdown: the table, then the dispatch names of one layer

Per layer = dispatches of the 2-layer model minus those of the 1-layer model, the measure of
kiln.dispatches.dispatches_per_layer (iree-compile --compile-to=flow, CPU target). The models,
the "off"/"on"/"on-fused" options and the pinned numbers are those of tests/test_fusion.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import kiln  # noqa: E402
from kiln.dispatches import count_dispatches  # noqa: E402
from test_fusion import CONFIGS, FACTORIES, TARGET_PER_LAYER, example_args  # noqa: E402

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
    counts = [count_dispatches(kiln.compile_to_vmfb(FACTORIES[name](layers), example_args(),
                                                    target="cpu", compile_to="iree-input",
                                                    **CONFIGS[config]))
              for layers in (1, 2)]
    return counts[1].count - counts[0].count, layer_names(counts[0].names, counts[1].names)


def main() -> None:
    results = {(name, config): measure(name, config) for name in FACTORIES for config in CONFIGS}
    print("| model | " + " | ".join(f"passes {c}" for c in CONFIGS) + " | target |")
    print("|---" * (len(CONFIGS) + 2) + "|")
    for name in FACTORIES:
        print(f"| {LABELS[name]} | " + " | ".join(str(results[(name, c)][0]) for c in CONFIGS) +
              f" | ≤ {TARGET_PER_LAYER} |")
    for config in CONFIGS:
        print(f"\nDispatches of one layer, passes {config}:")
        for name in FACTORIES:
            print(f"\n{LABELS[name]}:\n")
            print("\n".join(f"{i}. `{n}`" for i, n in enumerate(results[(name, config)][1], 1)))


if __name__ == "__main__":
    main()
