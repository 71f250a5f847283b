"""Helpers for IR and pass-pipeline text handled as strings (no MLIR bindings): IR crosses to
IREE as text, and kiln.device_state, kiln.parameters and kiln-opt edit or read it as such."""

from __future__ import annotations

import re

PIPELINE_BRACKETS = ("([{", ")]}")  # pass pipelines: `a{x=1},b(c)`
TYPE_BRACKETS = ("(<[{", ")>]}")  # function headers: `%a: !torch.vtensor<[2,4],f32>, ...`


def split_top_level(text: str, brackets: tuple[str, str] = PIPELINE_BRACKETS) -> list[str]:
    """`text` split on the commas outside brackets (`brackets`: the openers and the closers),
    each part stripped, empty parts left out."""
    opening, closing = brackets
    parts, depth, current = [], 0, []
    for char in text:
        if char in opening:
            depth += 1
        elif char in closing:
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def mlir_string(text: str) -> str:
    """`text` as an MLIR string literal (quotes, backslashes, unprintables as \\XX escapes)."""
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\{ord(c):02X}"
                         for c in text) + '"'


def mlir_unescape(text: str) -> str:
    """The contents of an MLIR string literal as printed (without its quotes) as plain text."""
    return re.sub(r"\\([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)),
                  text.replace("\\\\", "\\5C").replace('\\"', "\\22").replace("\\n", "\\0A")
                  .replace("\\t", "\\09"))
