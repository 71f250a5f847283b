"""Capture of a Hugging Face causal LM with a static KV cache, for `kiln.compile_generator`.

`DecoderStep` wraps the model in a module whose forward takes the cache as plain tensors and
returns them updated, so torch.export sees one functional program per entry point:

    step(input_ids [B, T], position_ids [B, T], cache_position [1], attention_mask [B, S],
         cache_0, cache_1, ... [B, kv heads, S, head dim])
      → (next_token [B] (greedy), logits [B, vocab] (of the last position), cache_0', ...)

`cache_position` is the cache slot of `input_ids[:, 0]`; T new keys/values are written at slots
`cache_position + [0, T)` (decode on CPU: `index_copy`, which IREE runs as a scatter into the
cache; prefill chunks: a select between the cache and the new rows gathered to their slots;
decode for CUDA: `where(slot == cache_position, new row, cache)` — IREE 3.13's CUDA scatter of
the decode write stopped with an illegal address on an H100, see `scatter_decode_writes` — which
kiln-select-cuda-kernels turns into the decode attention kernel's own write of the row, in
place, when Kiln's kernels are on). The model
is called the way transformers' `generate` calls it with a static cache (`position_ids` from the
attention mask, one cache object following transformers' `Cache` interface), with the 4-D
attention mask built here: a key slot is visible to a query when it is not padding and not after
the query's slot. transformers returns a 4-D mask unchanged, so the model's own attention code
(eager or SDPA) runs as written and Kiln's raising sees the attention with its mask.

Every query row sees at least its own slot (also padding rows, whose outputs are discarded): a
row with no visible key would make a softmax of NaNs, and the NaN keys and values it wrote would
poison later products even where they are masked.

The cache shapes come from running the model eagerly on one token with transformers'
`DynamicCache` (`CacheGeometry.probe`), which works for any model that calls `cache.update`
(GPT-2, Llama, Qwen2, Mistral, Phi-3, Gemma, OPT, GPT-NeoX, ...).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

CACHE_INPUT = "cache"  # the state inputs are cache_0, cache_1, ... (keys, values per layer)


@dataclass(frozen=True)
class CacheGeometry:
    """Per layer: key and value shapes [B, kv heads, S, head dim] and the cache dtype."""

    key_shapes: tuple[tuple[int, ...], ...]
    value_shapes: tuple[tuple[int, ...], ...]
    dtype: torch.dtype

    @property
    def layers(self) -> int:
        return len(self.key_shapes)

    @property
    def input_names(self) -> list[str]:
        return [f"{CACHE_INPUT}_{i}" for i in range(2 * self.layers)]

    def zeros(self) -> list[torch.Tensor]:
        tensors = []
        for key, value in zip(self.key_shapes, self.value_shapes):
            tensors += [torch.zeros(key, dtype=self.dtype), torch.zeros(value, dtype=self.dtype)]
        return tensors

    @classmethod
    def probe(cls, model: nn.Module, batch_size: int, max_seq_len: int) -> "CacheGeometry":
        """Run `model` on one token per row and read the shapes its layers cache."""
        from transformers import DynamicCache

        from kiln.errors import KilnCompileError

        cache = DynamicCache()
        tokens = torch.zeros((batch_size, 1), dtype=torch.long)
        try:
            with torch.no_grad():
                model(input_ids=tokens, cache=cache, use_cache=True)
        except TypeError as error:
            raise KilnCompileError(
                f"compile_generator: {type(model).__name__} does not take "
                f"model(input_ids=..., cache=..., use_cache=True) like a transformers causal "
                f"LM: {error}") from error
        layers = [layer for layer in getattr(cache, "layers", [])
                  if getattr(layer, "keys", None) is not None]
        if not layers:
            raise KilnCompileError(f"compile_generator: {type(model).__name__} wrote nothing "
                                   f"to its cache (it needs a decoder that calls cache.update)")
        keys = tuple((*layer.keys.shape[:2], max_seq_len, layer.keys.shape[3])
                     for layer in layers)
        values = tuple((*layer.values.shape[:2], max_seq_len, layer.values.shape[3])
                       for layer in layers)
        return cls(keys, values, layers[0].keys.dtype)


GREEDY_WIDTH_MULTIPLE = 128
# Logits per chunk of the greedy token's first reduction: one workgroup each, so a 50k-wide row
# spreads over ~50 of them (one workgroup for the whole row took 33 µs of GPT-2's 0.63 ms decode
# step on an H100, docs/decisions.md).
GREEDY_CHUNK = 1024


def _static_layer_class(scatter_decode_writes: bool, gather_from_copy: bool):
    from transformers.cache_utils import StaticLayer

    class FunctionalStaticLayer(StaticLayer):
        """A static cache layer over given tensors, updated out of place (for torch.export):
        `update` writes the new keys/values at slots `start + [0, T)` and keeps the results,
        which the step returns as its new cache."""

        def __init__(self, keys, values, start, max_cache_len):
            super().__init__(max_cache_len)
            self.keys, self.values = keys, values
            self.cumulative_length = start  # slot of the first new token, a [1] tensor
            self.batch_size, self.num_heads = keys.shape[:2]
            self.k_head_dim, self.v_head_dim = keys.shape[3], values.shape[3]
            self.device = keys.device
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            self.keys = self._write(self.keys, key_states)
            self.values = self._write(self.values, value_states)
            return self.keys, self.values

        def _write(self, cache, new):
            """`cache` with `new` [B, H, T, D] at slots start + [0, T)."""
            new = new.to(cache.dtype)
            count = new.shape[-2]
            if count == 1 and scatter_decode_writes:  # one row per head, in place in IREE
                return cache.index_copy(2, self.cumulative_length, new)
            if count == 1:
                # Decode without a scatter: the new row, broadcast over the slots, where the
                # slot is the position. kiln-select-cuda-kernels matches this form and the
                # decode attention kernel writes the row in place instead (no pass over the
                # cache, kiln.passes.lowering.cuda_kernel_fusion.decode_cache_write).
                slot = torch.arange(self.max_cache_len, device=cache.device) == \
                    self.cumulative_length
                return torch.where(slot[None, None, :, None], new, cache)
            # Prefill chunks: every slot takes its row of `new` (a gather) or keeps its value.
            # index_copy of T rows became a scatter with a coordinate per element that IREE's
            # CPU backend could not compile for GPT-2 small (128 KiB of stack at T = 64).
            offsets = torch.arange(self.max_cache_len, device=cache.device) - \
                self.cumulative_length
            inside = (offsets >= 0) & (offsets < count)
            # For CUDA the gather reads a padded copy of `new`, never `new` itself: `new` is
            # often a strided slice (the v heads of a fused QKV projection), and IREE 3.13's
            # CUDA code for a gather fused with a strided load read rows after the first from
            # the wrong place (an H100: batch-8 generators wrong from row 1 on; docs/decisions.md
            # "CUDA generators of more than one row"). The pad is a copy IREE keeps as its own
            # dispatch, so the gather's source is a whole contiguous buffer. (The CPU's code is
            # right without it, and the copy cost GPT-2 small's 128-token prefill 6%.)
            source = torch.nn.functional.pad(new, (0, 0, 0, 1)) if gather_from_copy else new
            placed = source.index_select(2, offsets.clamp(0, count - 1))
            return torch.where(inside[None, None, :, None], placed, cache)

    return FunctionalStaticLayer


def _accepts(module: nn.Module, name: str) -> bool:
    parameters = inspect.signature(module.forward).parameters
    return name in parameters


class DecoderStep(nn.Module):
    """prefill (T ≥ 2 new tokens) and decode (T = 1) of `model` over a static cache of
    `max_seq_len` slots; see the module docstring for the calling convention."""

    def __init__(self, model: nn.Module, geometry: CacheGeometry, max_seq_len: int,
                 scatter_decode_writes: bool = True, greedy_chunk: int | None = GREEDY_CHUNK,
                 gather_from_copy: bool = False):
        """`scatter_decode_writes`: decode writes its row with `index_copy` (a scatter: touches
        one row; CPU) instead of a select over every slot (IREE reads and writes the whole
        cache per step: GPT-2 small, f16, 256 slots: 9.4 MB each way, against 250 MB of
        weights read). The CUDA artifacts use the select: the generator whose decode scattered
        stopped with CUDA_ERROR_ILLEGAL_ADDRESS on an H100 with and without Kiln's kernels
        (bench/gpu/generate_variants.py). With Kiln's kernels the select never runs: the
        decode attention kernel writes the row in place (docs/decisions.md).
        `greedy_chunk`: the greedy token's first reduction per chunk of that many logits, or
        None for one reduction over the row (`first_max_index`). `gather_from_copy`: prefill
        chunks gather their new rows from a copy (CUDA: see `FunctionalStaticLayer._write`)."""
        super().__init__()
        self.model = model
        self.geometry = geometry
        self.max_seq_len = max_seq_len
        self.pass_position_ids = _accepts(model, "position_ids")
        self.keep_last_logits = _accepts(model, "logits_to_keep")
        self._layer_class = _static_layer_class(scatter_decode_writes, gather_from_copy)
        self.greedy_chunk = greedy_chunk

    def forward(self, input_ids, position_ids, cache_position, attention_mask, *cache):
        from transformers.cache_utils import Cache

        batch, new_tokens = input_ids.shape
        slots = cache_position + torch.arange(new_tokens, device=input_ids.device)
        key_slots = torch.arange(self.max_seq_len, device=input_ids.device)
        visible = (key_slots[None, :] <= slots[:, None])[None, None] & \
            (attention_mask != 0)[:, None, None, :]
        visible = visible | (key_slots[None, :] == slots[:, None])[None, None]
        dtype = self.geometry.dtype
        mask = torch.zeros(visible.shape, dtype=dtype, device=input_ids.device).masked_fill(
            ~visible, torch.finfo(dtype).min)
        layers = [self._layer_class(cache[2 * i], cache[2 * i + 1], cache_position,
                                    self.max_seq_len) for i in range(len(cache) // 2)]
        kwargs = {"input_ids": input_ids, "attention_mask": mask, "cache": Cache(layers=layers),
                  "use_cache": True, "return_dict": True}
        if self.pass_position_ids:
            kwargs["position_ids"] = position_ids
        if self.keep_last_logits:
            kwargs["logits_to_keep"] = 1
        logits = self.model(**kwargs).logits[:, -1, :]
        updated = []
        for layer in layers:
            updated += [layer.keys, layer.values]
        return (first_max_index(logits, self.greedy_chunk), logits, *updated)

    def example_inputs(self, batch_size: int, new_tokens: int) -> tuple:
        zeros = torch.zeros((batch_size, new_tokens), dtype=torch.long)
        return (zeros, zeros.clone(), torch.zeros(1, dtype=torch.long),
                torch.ones((batch_size, self.max_seq_len), dtype=torch.long),
                *self.geometry.zeros())


def first_max_index(logits, chunk: int | None = GREEDY_CHUNK):
    """`logits.argmax(-1)` (the first index of the largest value) as amax + the smallest index
    holding it: IREE 3.13's CUDA backend aborted on `aten.argmax` over GPT-2's 50,257-wide
    vocabulary ("SmallVector unable to grow" in NVPTX instruction selection of the
    arg_compare dispatch); this form compiles on CPU and CUDA. The index is reduced as a float
    (exact below 2^24): an int64 `amin` "failed to distribute" on CUDA at [2, 96] and
    [8, 32000] logits (tests/test_generate.py pins the shapes), and on an H100 the int32 `amin`
    returned -1 for 256- and 32,000-wide vocabularies (bench/gpu/greedy_check.py), while float
    reductions are the ones every softmax and norm already runs.

    Rows wider than `chunk` are reduced in two steps: the maximum and its first index in each
    chunk (in parallel over the chunks), then the first chunk holding the row's maximum;
    `chunk=None` reduces the row at once."""
    import torch

    vocab = logits.shape[-1]
    if vocab > 2 ** 24:
        raise ValueError(f"greedy token: a vocabulary of {vocab} entries is over 2^24, where "
                         f"float32 indices stop being exact")
    # Widths are padded with -inf (never the first maximum) to whole chunks, and at most to a
    # multiple of 128: on an H100 the reduction over GPT-2's 50,257 logits took 3.0 ms per step
    # in IREE's CUDA code, over Llama's 32,000 0.024 ms (bench/generate.py --profile).
    whole_row = vocab + -vocab % GREEDY_WIDTH_MULTIPLE
    chunk = whole_row if chunk is None else min(chunk, whole_row)
    padding = -vocab % chunk
    if padding:
        logits = torch.nn.functional.pad(logits, (0, padding), value=float("-inf"))
    index = torch.arange(chunk, device=logits.device, dtype=torch.float32)
    chunks = (vocab + padding) // chunk
    if chunks == 1:  # the row at once: the form checked on an H100 (bench/gpu/greedy_check.py)
        best = logits.amax(-1, keepdim=True)
        return torch.where(logits == best, index, float(chunk)).amin(-1).long()
    pieces = logits.reshape(*logits.shape[:-1], chunks, chunk)
    chunk_best = pieces.amax(-1)
    chunk_first = torch.where(pieces == chunk_best.unsqueeze(-1), index, float(chunk)).amin(-1)
    best = chunk_best.amax(-1, keepdim=True)
    starts = torch.arange(chunks, device=logits.device, dtype=torch.float32) * chunk
    return torch.where(chunk_best == best, chunk_first + starts,
                       float(vocab + padding)).amin(-1).long()
