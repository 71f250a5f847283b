"""Text generation: `compile_generator` (prefill + decode with an on-device KV cache in one
artifact) and `load_generator` (the token loop, greedy or sampled, like transformers' generate).

    art = kiln.compile_generator(model, max_seq_len=256, batch_size=1)
    gen = kiln.load_generator(art, device="cpu")
    out = gen.generate(input_ids, max_new_tokens=32)          # LongTensor [batch, prompt + new]
    for tokens in gen.stream(input_ids, max_new_tokens=32): ...   # [batch] per step

The artifact's functions share the weights: `prefill_<n>` for chunks of n prompt tokens (static
lengths, 16, 64 and 256 by default: a prompt runs as a few chunk calls, `plan_prefill`) and
`decode` (one token per row). All write the KV cache, a set of mutable globals of the artifact
(kiln.device_state) updated in place: it never crosses the host. Per step the host sends the
token, its position and cache slot (a few bytes) and reads back the greedy token (one int64 per
row) or, when sampling, the last position's logits. Artifacts for CUDA also have `decode_loop`
(kiln.decode_loop): greedy `generate` there runs all its decode steps in one call, each
token fed to the next on the device (1.4x the tokens/s of a call per step on an H100).

Batches have `batch_size` rows at most; fewer rows are padded with copies of the first (their
results are dropped). Left padding follows transformers: pass `attention_mask` (0 for padding);
positions count only unmasked tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from kiln.errors import KilnLoadError
from kiln.runtime.device import RuntimeOptions
from kiln.targets import normalize_target

PREFILL_PREFIX = "prefill_"
# Static prompt chunks: a prompt runs as a few calls of these lengths (plan_prefill). Static
# shapes, because IREE 3.13 failed on dynamic-length prefills: GPT-NeoX's tokens were wrong at
# batch 2 (logits off by 4.1; right without data tiling) and Gemma's RMSNorm did not compile
# (docs/decisions.md, "Generation").
DEFAULT_PREFILL_CHUNKS = (16, 64, 256)
# Greedy steps per `decode_loop` call when generation may stop at an eos token: a call runs
# all its steps, so this bounds the steps computed after every row has finished.
EOS_CHECK_STEPS = 16
# The decode function's inputs, in order (kiln.kv_cache.DecoderStep without the cache).
STEP_INPUTS = ("input_ids", "position_ids", "cache_position", "attention_mask")


# Whether compile_generator builds CUDA generators of more than one row. Off: on an H100 their
# rows after the first came out wrong (docs/decisions.md "CUDA generators of more than one row");
# a script debugging that on a GPU sets it (bench/gpu/generate_variants.py --batch).
CUDA_BATCHED_GENERATION = False
_BATCHED_CUDA_WRONG = ("on an H100, CUDA generators of more than one row gave the first row "
                       "transformers' tokens and wrong tokens for the others (found 2026-12-07: "
                       "IREE's CUDA gather from a strided slice; the workaround awaits a GPU "
                       "check; docs/decisions.md \"CUDA generators of more than one row\")")


def compile_generator(model, *, max_seq_len: int, batch_size: int = 1, target="cpu",
                      output=None, dtype=None, prefill_chunks: Optional[Sequence[int]] = None,
                      decode_cache_write: str = "auto", decode_loop: Optional[bool] = None,
                      **options):
    """Compile a transformers causal LM (or a module with its calling convention:
    `model(input_ids=, attention_mask=, position_ids=, cache=, use_cache=True)` returning
    `.logits`, its attention layers calling `cache.update`) into one generation artifact.

    `max_seq_len`: cache slots (prompt + new tokens - 1 at most); `batch_size`: rows per call;
    `dtype`: compile the model in this dtype (e.g. torch.float16 for CUDA; the model passed in
    is not changed); `prefill_chunks`: the prompt lengths compiled as `prefill_<n>` functions
    (default: 16, 64 and 256 up to `max_seq_len`; see `plan_prefill`); `decode_cache_write`:
    how decode writes its keys/values, "scatter" (one row) or "select" (over every slot; with
    Kiln's CUDA kernels the decode attention kernel writes the row in place instead),
    "auto": scatter unless CUDA is a target (kiln.kv_cache.DecoderStep); `decode_loop`: also
    compile `decode_loop`, greedy steps run as a loop on the device (kiln.decode_loop; None:
    when CUDA is a target, where it measured 1.4x the tokens/s of one call per step). Options
    as `kiln.compile_to_vmfb`. Returns the `.vmfb` bytes, or its path when `output` is given."""
    import copy

    import torch

    from kiln.compiler import compile_entry_points
    from kiln.kv_cache import CacheGeometry, DecoderStep

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"compile_generator: expected a torch.nn.Module (a transformers causal "
                        f"LM), got {type(model).__name__}")
    for name, value, low in (("max_seq_len", max_seq_len, 2), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"compile_generator: {name} must be an int >= {low}, got {value!r}")
    chunks = _prefill_chunks(prefill_chunks, max_seq_len)
    if decode_cache_write not in ("auto", "scatter", "select"):
        raise ValueError(f"compile_generator: decode_cache_write must be 'auto', 'scatter' or "
                         f"'select', got {decode_cache_write!r}")
    devices = normalize_target(target)
    cuda = "cuda" in devices
    # (an artifact for the CPU and CUDA is refused on CUDA when loaded: Generator)
    if devices == ("cuda",) and batch_size > 1 and not CUDA_BATCHED_GENERATION:
        raise ValueError(f"compile_generator: batch_size={batch_size} for target {target!r} is "
                         f"refused: {_BATCHED_CUDA_WRONG}. Use batch_size=1 on CUDA, or "
                         f"target='cpu' for batches")
    scatter = not cuda if decode_cache_write == "auto" else decode_cache_write == "scatter"
    if decode_loop is not None and not isinstance(decode_loop, bool):
        raise ValueError(f"compile_generator: decode_loop must be True, False or None, got "
                         f"{decode_loop!r}")
    with_loop = cuda if decode_loop is None else decode_loop
    _check_positions(model, max_seq_len)
    if dtype is not None and any(p.dtype != dtype for p in model.parameters()):
        model = copy.deepcopy(model).to(dtype)
    model = model.eval()
    geometry = CacheGeometry.probe(model, batch_size, max_seq_len)
    # The greedy token in DecoderStep's 1024-wide chunks on every target (checked against
    # torch.argmax on an H100 by bench/gpu/greedy_check.py, docs/decisions.md).
    step = DecoderStep(model, geometry, max_seq_len, scatter_decode_writes=scatter,
                       gather_from_copy=cuda)
    entries = {f"{PREFILL_PREFIX}{n}": (step, step.example_inputs(batch_size, n))
               for n in chunks}
    entries["decode"] = (step, step.example_inputs(batch_size, 1))
    return compile_entry_points(entries, target=target, output=output,
                                state=geometry.input_names,
                                decode_loops=("decode",) if with_loop else (), **options)


def _prefill_chunks(chunks, max_seq_len: int) -> tuple[int, ...]:
    if chunks is None:
        chosen = tuple(n for n in DEFAULT_PREFILL_CHUNKS if n <= max_seq_len)
        return chosen or (max(2, max_seq_len // 2),)
    chosen = tuple(sorted(set(chunks)))
    if not chosen or any(isinstance(n, bool) or not isinstance(n, int) or
                         not 2 <= n <= max_seq_len for n in chosen):
        raise ValueError(f"compile_generator: prefill_chunks must be ints in [2, max_seq_len="
                         f"{max_seq_len}], got {chunks!r}")
    return chosen


def _check_positions(model, max_seq_len: int) -> None:
    """Learned position tables (GPT-2's n_positions, OPT's max_position_embeddings) end; a
    longer cache would index past them."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", "") not in _LEARNED_POSITIONS:
        return
    limit = getattr(config, _LEARNED_POSITIONS[config.model_type], None)
    if isinstance(limit, int) and max_seq_len > limit:
        raise ValueError(f"compile_generator: max_seq_len={max_seq_len} exceeds the model's "
                         f"{_LEARNED_POSITIONS[config.model_type]}={limit} (its learned "
                         f"position table)")
    window = getattr(config, "sliding_window", None)
    if isinstance(window, int) and window < max_seq_len:
        raise ValueError(f"compile_generator: the model attends within a sliding window of "
                         f"{window} tokens, shorter than max_seq_len={max_seq_len}; "
                         f"sliding-window caches are not supported (use max_seq_len <= "
                         f"{window})")


_LEARNED_POSITIONS = {"gpt2": "n_positions", "opt": "max_position_embeddings",
                      "gpt_neo": "max_position_embeddings", "biogpt": "max_position_embeddings"}


# How generators run on CUDA: IREE's caching allocator around the device's (each decode step's
# transient buffers reused instead of freed with cuMemFree, which waits for the GPU). H100s,
# batch 1, prompt 128, decode tokens/s with vs without, two device calls: GPT-2 1480-1507 vs
# 1340-1389 and 1571-1593 vs 1492-1499; the zoo Llama 1484-1491 vs 1395-1494 and 1580-1614 vs
# 1483-1514 (docs/decisions.md "Decode steps without barriers"). A generator's device data
# never leaves it but as host copies, so its pooled buffers are never in torch's hands.
GENERATOR_RUNTIME = RuntimeOptions(cuda_allocators=("caching",))


def load_generator(artifact, device: str = "cpu", decode_loop: Optional[bool] = None,
                   options: Optional[RuntimeOptions] = None) -> "Generator":
    """Load an artifact of `compile_generator` (bytes or path) for `device` ("cpu", "cuda").
    `decode_loop`: greedy `generate` takes its steps from the artifact's `decode_loop` (None:
    on CUDA, where the artifact has one; True: wherever it has one). `options`: how the module
    runs (default GENERATOR_RUNTIME)."""
    from kiln.runtime import load

    return Generator(load(artifact, device=device, options=options or GENERATOR_RUNTIME),
                     decode_loop=decode_loop)


@dataclass
class GenerationStats:
    """Timing of the last `generate` / `stream` call."""

    batch: int = 0
    prompt_tokens: int = 0
    new_tokens: int = 0  # steps taken (tokens per row)
    time_to_first_token_s: float = 0.0
    decode_s: float = 0.0  # after the first token
    step_times_s: list = field(default_factory=list)

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens per second of every row together after the first token (decode steps)."""
        steps = self.new_tokens - 1
        return self.batch * steps / self.decode_s if steps > 0 and self.decode_s > 0 else 0.0


class Generator:
    """The token loop over a generation artifact; see the module docstring."""

    def __init__(self, module, decode_loop: Optional[bool] = None):
        chunks = {int(n[len(PREFILL_PREFIX):]): n for n in module.entry_points
                  if n.startswith(PREFILL_PREFIX) and n[len(PREFILL_PREFIX):].isdigit()}
        decode = module["decode"] if "decode" in module.entry_points else None
        if decode is None or not decode.signature or "state" not in decode.signature:
            raise KilnLoadError(f"not a generation artifact (kiln.compile_generator): it has "
                                f"the functions {', '.join(module.entry_points)}")
        names = [i["name"] for i in decode.signature["inputs"]]
        if tuple(names) != STEP_INPUTS:
            raise KilnLoadError(f"generation artifact with unexpected decode inputs {names} "
                                f"(expected {', '.join(STEP_INPUTS)})")
        self.module = module
        self._decode = decode
        # Greedy steps as one call (kiln.decode_loop). Not on the CPU by default: there IREE
        # left the packing of GPT-2's [in, out] weights for Kiln's GEMM kernel inside the
        # loop (43 ms per step), which a single decode call hoists to load time
        # (docs/decisions.md, "Greedy decode steps in a loop on the device").
        has_loop = "decode_loop" in module.entry_points
        if decode_loop and not has_loop:
            raise KilnLoadError("decode_loop=True: this generation artifact has no decode_loop "
                                "(compile it with kiln.compile_generator(..., decode_loop=True))")
        use_loop = module.device == "cuda" if decode_loop is None else decode_loop
        self._decode_loop = module["decode_loop"] if has_loop and use_loop else None
        self._chunks = {n: module[name] for n, name in sorted(chunks.items())}
        self.batch_size, self.max_seq_len = decode.signature["inputs"][3]["shape"]
        if module.device == "cuda" and self.batch_size > 1 and not CUDA_BATCHED_GENERATION:
            raise KilnLoadError(f"a generator of {self.batch_size} rows on CUDA is refused: "
                                f"{_BATCHED_CUDA_WRONG}. Compile with batch_size=1 for CUDA, "
                                f"or load it on the CPU")
        self.vocab_size = decode.signature["outputs"][1]["shape"][1]
        self.prefill_chunks = tuple(self._chunks)
        self.device = module.device
        self.stats = GenerationStats()

    def generate(self, input_ids, max_new_tokens: int = 32, attention_mask=None,
                 do_sample: bool = False, temperature: float = 1.0, top_k: Optional[int] = None,
                 top_p: Optional[float] = None,
                 eos_token_id: Union[int, Sequence[int], None] = None,
                 seed: Optional[int] = None, pad_token_id: Optional[int] = None):
        """Prompt + generated tokens, LongTensor [batch, prompt + new] as transformers returns:
        rows that met `eos_token_id` continue with `pad_token_id` (default: the first eos id)
        until every row has, or `max_new_tokens` are made."""
        import torch

        prompt = _as_long_tensor(input_ids, "input_ids")
        steps = list(self._tokens(prompt, max_new_tokens, attention_mask, do_sample,
                                  temperature, top_k, top_p, eos_token_id, seed, pad_token_id,
                                  device_loop=not do_sample and self._decode_loop is not None))
        if not steps:
            return prompt.clone()
        return torch.cat([prompt, torch.stack(steps, dim=1)], dim=1)

    def stream(self, input_ids, max_new_tokens: int = 32, attention_mask=None,
               do_sample: bool = False, temperature: float = 1.0, top_k: Optional[int] = None,
               top_p: Optional[float] = None,
               eos_token_id: Union[int, Sequence[int], None] = None,
               seed: Optional[int] = None,
               pad_token_id: Optional[int] = None) -> Iterator:
        """Yield the new token of every row (LongTensor [batch]) as each step finishes."""
        return self._tokens(_as_long_tensor(input_ids, "input_ids"), max_new_tokens,
                            attention_mask, do_sample, temperature, top_k, top_p, eos_token_id,
                            seed, pad_token_id, device_loop=False)

    def _tokens(self, prompt, max_new_tokens: int, attention_mask, do_sample: bool,
                temperature: float, top_k: Optional[int], top_p: Optional[float],
                eos_token_id, seed: Optional[int], pad_token_id: Optional[int],
                device_loop: bool) -> Iterator:
        """The new token of every row (LongTensor [batch]) per step. `device_loop`: greedy
        steps after the first run as calls of the artifact's `decode_loop` (many steps per
        call, the tokens fed back on the device), yielded when each call returns; with
        `eos_token_id`, calls of at most EOS_CHECK_STEPS steps, so generation stops soon
        after every row has met it. The tokens are those of single steps: a row that met eos
        is fed its own greedy tokens instead of the pad id, which changes nothing it returns
        (rows do not interact)."""
        import torch

        rows, length = self._check_prompt(prompt, max_new_tokens)
        mask = self._prompt_mask(attention_mask, rows, length)
        eos = _eos_ids(eos_token_id)
        if pad_token_id is None and eos:
            pad_token_id = eos[0]
        sampler = _Sampler(temperature, top_k, top_p, seed) if do_sample else None
        if max_new_tokens == 0:
            return
        batch, slots = self.batch_size, self.max_seq_len
        padding, calls = plan_prefill(length, self.prefill_chunks, max_new_tokens, slots)
        width = padding + length  # cache slots the prompt takes

        # Rows beyond the caller's are copies of row 0: the artifact has a fixed batch. Chunk
        # padding goes on the left, masked, like the caller's own padding.
        tokens = np.zeros((batch, width), np.int64)
        tokens[:rows, padding:] = prompt.numpy()
        tokens[rows:] = tokens[0]
        mask_rows = np.zeros((batch, width), np.int64)
        mask_rows[:rows, padding:] = mask
        mask_rows[rows:] = mask_rows[0]
        # Positions count unmasked tokens (transformers' generate); padding gets position 0.
        positions = np.where(mask_rows != 0, np.cumsum(mask_rows, axis=1) - 1, 0)
        full_mask = np.ones((batch, slots), np.int64)
        full_mask[:, :width] = mask_rows
        cache_mask = self.module.to_device(full_mask)  # uploaded once per call

        stats = self.stats = GenerationStats(batch=rows, prompt_tokens=length)
        unfinished = np.ones(rows, dtype=bool)
        start = time.perf_counter()
        slot = 0
        for count in calls:  # the prompt
            entry = self._chunks[count] if count > 1 else self._decode
            greedy, logits = entry(tokens[:, slot:slot + count], positions[:, slot:slot + count],
                                   np.array([slot], np.int64), cache_mask, outputs="device")
            slot += count
        last_position = positions[:, -1:]
        burst = np.empty((0, 0), np.int64)  # tokens of the last decode_loop call, by step
        burst_start = 0
        for step in range(max_new_tokens):
            tick = time.perf_counter()
            if step and device_loop:
                if step - burst_start >= burst.shape[1]:
                    # A new call from this step: the token chosen last step goes in first.
                    steps = max_new_tokens - step
                    if eos:
                        steps = min(steps, EOS_CHECK_STEPS)
                    tokens_out = self._decode_loop(
                        self._fed(chosen), last_position + step,
                        np.array([width + step - 1], np.int64), cache_mask,
                        np.array([steps], np.int64), outputs="numpy")
                    burst, burst_start = np.asarray(tokens_out)[:, :steps], step
                chosen = np.array(burst[:rows, step - burst_start], dtype=np.int64)
            else:
                if step:  # the token chosen last step goes to the next slot
                    greedy, logits = self._decode(self._fed(chosen), last_position + step,
                                                  np.array([width + step - 1], np.int64),
                                                  cache_mask, outputs="device")
                if sampler is None:
                    chosen = np.array(greedy.numpy()[:rows], dtype=np.int64)
                else:
                    chosen = sampler(np.asarray(logits.numpy(), np.float32)[:rows])
            if eos:
                chosen = np.where(unfinished, chosen, pad_token_id)
                unfinished &= ~np.isin(chosen, eos)
            now = time.perf_counter()
            stats.step_times_s.append(now - (start if step == 0 else tick))
            stats.new_tokens = step + 1
            if step == 0:
                stats.time_to_first_token_s = now - start
            else:
                stats.decode_s += now - tick
            yield torch.from_numpy(chosen)
            if eos and not unfinished.any():
                break

    def _fed(self, chosen: np.ndarray) -> np.ndarray:
        """The decode input [batch, 1] of the caller's rows' tokens; rows beyond them (the
        artifact's fixed batch) repeat the first."""
        fed = np.empty((self.batch_size, 1), np.int64)
        fed[:len(chosen), 0] = chosen
        fed[len(chosen):, 0] = chosen[0]
        return fed

    def _check_prompt(self, prompt, max_new_tokens: int) -> tuple[int, int]:
        if prompt.ndim != 2:
            raise ValueError(f"input_ids: expected [batch, prompt length], got shape "
                             f"{tuple(prompt.shape)}")
        rows, length = prompt.shape
        if rows < 1 or rows > self.batch_size:
            raise ValueError(f"input_ids: {rows} rows; this generator was compiled for "
                             f"batch_size={self.batch_size} (1 to {self.batch_size} rows)")
        if length < 1:
            raise ValueError("input_ids: the prompt is empty")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or \
                max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        # The last new token is never fed back, so it needs no cache slot.
        needed = length + max(max_new_tokens - 1, 0)
        if needed > self.max_seq_len:
            raise ValueError(f"prompt of {length} tokens + {max_new_tokens} new tokens needs "
                             f"{needed} cache slots; this generator was compiled with "
                             f"max_seq_len={self.max_seq_len}")
        low, high = int(prompt.min()), int(prompt.max())
        if low < 0 or high >= self.vocab_size:
            raise ValueError(f"input_ids: token ids must be in [0, {self.vocab_size}), got "
                             f"{low if low < 0 else high}")
        return rows, length

    def _prompt_mask(self, attention_mask, rows: int, length: int) -> np.ndarray:
        if attention_mask is None:
            return np.ones((rows, length), np.int64)
        mask = _as_long_tensor(attention_mask, "attention_mask").numpy()
        if mask.shape != (rows, length):
            raise ValueError(f"attention_mask: shape {mask.shape} differs from input_ids "
                             f"{(rows, length)}")
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask: values must be 0 (padding) or 1")
        if not mask.any(axis=1).all():
            raise ValueError("attention_mask: a row masks every prompt token")
        return mask.astype(np.int64)


def plan_prefill(length: int, chunks: Sequence[int], max_new_tokens: int,
                 max_seq_len: int) -> tuple[int, list[int]]:
    """(left padding, call lengths) that feed a prompt of `length` tokens to the cache: the
    longest chunks first; a rest shorter than every chunk is padded on the left to the shortest
    chunk (masked slots) when the cache has room for it and the new tokens, else (and for a
    rest of one token) fed through decode, one token per call."""
    padding = 0
    smallest = min(chunks) if chunks else 0
    rest = length % smallest if smallest else length
    if rest > 1 and length + (smallest - rest) + max(max_new_tokens - 1, 0) <= max_seq_len:
        padding = smallest - rest
    remaining, calls = length + padding, []
    for chunk in sorted(chunks, reverse=True):
        while remaining >= chunk:
            calls.append(chunk)
            remaining -= chunk
    return padding, calls + [1] * remaining


def _as_long_tensor(value, what: str):
    import torch

    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as error:
            raise TypeError(f"{what}: expected a tensor, array or nested list of ints, got "
                            f"{type(value).__name__}") from error
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
        raise TypeError(f"{what}: expected integer token ids, got dtype {tensor.dtype}")
    return tensor.to(torch.long)


def _eos_ids(eos_token_id) -> list[int]:
    if eos_token_id is None:
        return []
    ids = [eos_token_id] if isinstance(eos_token_id, (int, np.integer)) else list(eos_token_id)
    if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
        raise TypeError(f"eos_token_id: expected an int or a list of ints, got {eos_token_id!r}")
    return [int(i) for i in ids]


class _Sampler:
    """transformers' sampling: temperature, then top-k, then top-p (nucleus) filtering, then a
    draw from the softmax (torch.multinomial with a generator seeded by `seed`)."""

    def __init__(self, temperature: float, top_k: Optional[int], top_p: Optional[float],
                 seed: Optional[int]):
        import torch

        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {temperature!r}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)
        else:
            self.generator.seed()

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        import torch

        scores = torch.from_numpy(np.array(logits, np.float32))
        if self.temperature != 1.0:
            scores = scores / self.temperature
        if self.top_k is not None:
            k = min(self.top_k, scores.shape[-1])
            threshold = torch.topk(scores, k)[0][..., -1, None]
            scores = scores.masked_fill(scores < threshold, float("-inf"))
        if self.top_p is not None and self.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=False)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            remove = cumulative <= (1 - self.top_p)
            remove[..., -1:] = False
            scores = scores.masked_fill(remove.scatter(1, order, remove), float("-inf"))
        probabilities = scores.softmax(dim=-1)
        return torch.multinomial(probabilities, 1, generator=self.generator)[:, 0].numpy()
