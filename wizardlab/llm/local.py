"""`LocalBackend`: an in-process transformers model (the embedded Gemma or a local checkpoint).

The model loads lazily, once, on the first call (or earlier through `load()` / `warm()`),
and generates in one worker thread with continuous batching (`_Running`): requests (each with
its own temperature, top-p and random seed) generate together as rows of one KV cache, each
leaving (answered at once) at its own stop string, EOS or token budget, and the requests that wait join between
steps while there is room (up to `batch_size`). A burst is gathered for `batch_wait_s` first.
Prompts that start the same way (a task's system prompt, worked examples and template) reuse
the cached KV of that start (`PrefixCache`): a few-shot prompt costs only its own last tokens;
a task's head (system prompt and worked examples) is also stored in the cache dir, so the next
process reads it instead of computing it.
On a CPU with bfloat16 instructions (AVX512-BF16 / AMX) the weights run in bfloat16; on other
CPUs the embedded model runs its linear layers in int8 (each prompt token scaled to its own range:
`_row_scaled_linear`) and other checkpoints in float32
(`local_precision`; `WIZARDLAB_LOCAL_DTYPE` overrides).
`bench/local_generation.py` measures batched against one-at-a-time tokens/s.
A tokenizer without a chat template means a base model (`few_shot = True`): messages
are then rendered as plain text in the Alpaca style (see `render_plain`) and generation
stops where the model starts the next "### Instruction". Caller stop strings end
generation too; the returned text is cut before the stop string.

It does not retry, cache or count calls: `LLMClient` does that for every backend.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import hashlib
import json
import logging
import os
import queue
import random
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.llm.base import Completion, PermanentError, TransientError
from wizardlab.llm.embedded import EMBEDDED_NAMES

log = logging.getLogger(__name__)

INSTRUCTION = "### Instruction:\n"
RESPONSE = "### Response:\n"
FEW_SHOT_STOP = "### Instruction"


def render_plain(messages: list[dict]) -> str:
    """Chat messages as one plain-text prompt for a base model, ending with an open response.

    >>> render_plain([{"role": "user", "content": "Say hi."}])
    '### Instruction:\\nSay hi.\\n\\n### Response:\\n'
    """
    return _plain_turns(messages) + RESPONSE


def _plain_turns(messages: list[dict]) -> str:
    parts = []
    for message in messages:
        content = str(message.get("content") or "").strip()
        role = message.get("role")
        if role == "system":
            parts.append(f"{content}\n\n")
        elif role == "assistant":
            parts.append(f"{RESPONSE}{content}\n\n")
        else:
            parts.append(f"{INSTRUCTION}{content}\n\n")
    return "".join(parts)


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string, and whether one was found."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[:min(found)], True) if found else (text, False)


@dataclass
class _Request:
    messages: list[dict]
    max_tokens: int
    temperature: float
    stops: list[str]
    deadline: float
    top_p: float | None = None
    seed: int | None = None
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)

    @functools.cached_property
    def rng(self) -> random.Random:
        """The request's own draws: seeded, the same request draws the same numbers whatever else
        shares its batch (its tokens match as far as its logits do: joining a batch computes a
        prompt's tail in other chunks, and float rounding can flip a sampled token)."""
        return random.Random(self.seed) if self.seed is not None else random.Random()


def _next_tokens(logits, requests: list["_Request"], top_k: int = 50):
    """One token per row of `logits`, each row with its own request's settings: greedy at
    temperature 0, else sampling among the `top_k` likeliest (generate()'s default top_k) at the
    row's temperature, cut to the smallest set holding its `top_p` of the probability when given
    (nucleus sampling). Rows of any settings share a batch: a greedy check (the equality test, a
    score) generates beside sampled evolutions instead of waiting for them to finish."""
    import torch

    greedy = [i for i, r in enumerate(requests) if r.temperature <= 0]
    if len(greedy) == len(requests):
        return logits.argmax(-1)
    out = logits.new_empty(len(requests), dtype=torch.long)
    if greedy:
        rows = torch.tensor(greedy, device=logits.device)
        out[rows] = logits[rows].argmax(-1)
    sampled = [i for i, r in enumerate(requests) if r.temperature > 0]
    rows = torch.tensor(sampled, device=logits.device)
    part = logits if not greedy else logits[rows]
    values, indices = torch.topk(part.float(), min(top_k, logits.shape[-1]), dim=-1)
    temperature = torch.tensor([requests[i].temperature for i in sampled], device=logits.device)
    probs = torch.softmax(values / temperature[:, None], dim=-1)  # sorted, highest first
    top_p = [requests[i].top_p if requests[i].top_p is not None and requests[i].top_p < 1 else None
             for i in sampled]
    if any(p is not None for p in top_p):
        limit = torch.tensor([p if p is not None else float("inf") for p in top_p], device=logits.device)
        outside = probs.cumsum(-1) - probs >= limit[:, None]  # the mass before a token already reaches top_p
        probs = probs.masked_fill(outside, 0.0)
    # inverse-CDF draw with each row's own uniform (its request's rng), not one generator for the batch
    cdf = probs.cumsum(-1)
    uniform = torch.tensor([requests[i].rng.random() for i in sampled], device=logits.device, dtype=cdf.dtype)
    choice = (cdf < uniform[:, None] * cdf[:, -1:]).sum(-1, keepdim=True).clamp_(max=cdf.shape[-1] - 1)
    out[rows] = indices.gather(-1, choice).squeeze(-1)
    return out


class PrefixCache:
    """The KV cache of prompts, for the requests that start the same way: a task's system prompt and
    worked examples, and the template of its last message, are hundreds of tokens before each
    request's own few. A prompt takes the longest run of first tokens it shares with a cached one
    (the KV of a prefix does not depend on what follows it) and computes only the rest. Entries are
    kept in least-recently-used order within `max_bytes` (a prompt of 650 tokens is ~24 MB of float32
    KV on Gemma 3 270M; an evolution run's tasks need about 8)."""

    def __init__(self, max_bytes: int = 512 << 20, directory: str | Path | None = None,
                 disk_bytes: int = 512 << 20):
        self.max_bytes = max_bytes
        self.reused_tokens = self.prompt_tokens = 0  # prompt tokens read from the cache, of all
        self.computed_tokens = 0  # prompt tokens whose KV `get` computed
        self.disk_hits = 0  # task heads and templates read from `directory`
        self._entries: collections.OrderedDict[tuple[int, ...], list] = collections.OrderedDict()
        # Task heads (a few-shot task's system prompt and worked examples: ~0.45 s each on 2 cores,
        # ~8 per evolution run) and their templates (the head and the fixed start of the last message,
        # another ~100-200 tokens, `stored_template`) also persist under `directory`, so the next
        # process reads them (~20 MB, milliseconds) instead of computing them. `salt` names the weights
        # and how they run (set at load): another model, precision or library version never reads them.
        self.directory = Path(directory) if directory is not None else None
        self.disk_bytes = disk_bytes
        self.salt = ""
        # head ids -> (its template list's file, the lengths listed): read once a process, not per prompt
        self._templates: dict[tuple[int, ...], tuple[Path | None, list[int]]] = {}

    def match(self, ids: list[int]) -> tuple[int, list | None]:
        """(n, per-layer KV of an entry) for the longest cached run of `ids`' first n tokens, n < len(ids)."""
        best, best_key = 0, None
        for key in self._entries:
            n = _common_prefix(key, ids, len(ids) - 1)
            if n > best:
                best, best_key = n, key
        if best < MIN_PREFIX:
            return 0, None
        self._entries.move_to_end(best_key)
        return best, self._entries[best_key]

    def get(self, model, ids: tuple[int, ...], persist: bool = False) -> list:
        """Per layer (keys, values) of `ids` at positions 0..len-1, batch 1: on a miss, read from
        `directory` (`persist`: a task head) or computed from the longest cached start of `ids` on."""
        entry = self._entries.get(ids)
        if entry is not None:
            self._entries.move_to_end(ids)
            return entry
        import torch
        from transformers import DynamicCache

        file = self._file(ids) if persist else None
        entry = self._read(file, model) if file is not None else None
        if entry is None:
            start, base = self.match(list(ids))
            cache = DynamicCache()  # full layers: rows placed at other offsets keep every position they attend to
            for layer, (keys, values) in enumerate(base or []):
                cache.update(keys[:, :, :start], values[:, :, :start], layer)
            with torch.inference_mode():
                model(input_ids=torch.tensor([list(ids[start:])], device=model.device),
                      position_ids=torch.arange(start, len(ids), device=model.device)[None], cache=cache,
                      use_cache=True, logits_to_keep=1)
            entry = [(layer.keys, layer.values) for layer in cache.layers]
            self.computed_tokens += len(ids) - start
            if file is not None:
                self._write(file, entry)
        self.add(ids, entry)
        return entry

    def _file(self, ids: tuple[int, ...]) -> Path | None:
        if self.directory is None or not self.salt:
            return None
        digest = hashlib.sha256(json.dumps([self.salt, ids]).encode()).hexdigest()[:40]
        return self.directory / f"{digest}.safetensors"

    def _read(self, file: Path, model) -> list | None:
        """The entry stored in `file`, or None (absent, unreadable or not this model's shape: recomputed)."""
        if not file.is_file():
            return None
        try:
            from safetensors.torch import load_file

            tensors = load_file(str(file), device=str(model.device))
            entry = [(tensors[f"k{i}"], tensors[f"v{i}"]) for i in range(len(tensors) // 2)]
            if not entry or len(tensors) != 2 * len(entry):
                return None
            os.utime(file)  # recently used: pruned last
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is recomputed, never fatal
            log.warning("prefix cache %s unreadable (%s): recomputing it", file.name, _one_line(exc))
            return None
        self.disk_hits += 1
        return entry

    def _write(self, file: Path, entry: list) -> None:
        """Store `entry` atomically (a reader sees the whole file or none), then keep the directory
        within `disk_bytes` by removing the least recently used files. A failure only costs speed."""
        try:
            from safetensors.torch import save_file

            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f"{file.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
            save_file({f"{kind}{i}": t.contiguous() for i, (k, v) in enumerate(entry) for kind, t in
                       (("k", k), ("v", v))}, str(tmp))
            os.replace(tmp, file)
            stats = sorted(((f.stat(), f) for f in file.parent.glob("*.safetensors")),
                           key=lambda sf: sf[0].st_mtime, reverse=True)  # newest first, one stat a file
            total = 0
            for st, f in stats:
                total += st.st_size
                if total > self.disk_bytes and f != file:
                    f.unlink(missing_ok=True)
                    gone = f.with_suffix(".templates")  # a head's list of its template goes with it
                    gone.unlink(missing_ok=True)
                    self._templates = {k: v for k, v in self._templates.items() if v[0] != gone}
        except OSError as exc:
            log.warning("prefix cache: could not store %s (%s)", file.name, _one_line(exc))

    def add(self, ids: tuple[int, ...], entry: list) -> None:
        for key in [k for k in self._entries if len(k) < len(ids) and ids[:len(k)] == k]:
            del self._entries[key]  # a prefix of the new entry: the new one serves its prompts too
        self._entries[ids] = entry
        self._entries.move_to_end(ids)
        while len(self._entries) > 1 and self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)

    def prefixes(self, model, encoded: list[tuple[list[int], int]]) -> tuple[list, list[int]]:
        """For each prompt (ids, length of its turns before the last message): None or (n, KV) of its
        longest cached prefix, computing the turns' KV where no longer one is cached; and the rows
        whose whole prompt is worth caching: the first of each turns that no longer entry extends
        (the task's later prompts share its last message's template too)."""
        out, keep, seen = [], [], set()
        if self.max_bytes <= 0:  # caching off
            return [None] * len(encoded), []
        for i, (ids, head) in enumerate(encoded):
            n, kv = self.match(ids)
            if n < head:
                kv, n = self.get(model, tuple(ids[:head]), persist=True), head
            if head and n == head:  # a template of this task stored by an earlier process
                kv, n = self.stored_template(model, ids, head) or (kv, n)
            elif (head and n >= head + MIN_PREFIX and tuple(ids[:n]) not in self._entries
                  and self._note_template(ids, head, n)):
                # the template this prompt shares with an earlier prompt of its task (the longest
                # cached start of it is that prompt, whole): stored for later processes
                kv = self.get(model, tuple(ids[:n]), persist=True)
            shared = max((_common_prefix(tuple(other), ids, len(ids) - 1)  # with the others sent now
                          for j, (other, _) in enumerate(encoded) if j != i), default=0)
            if shared >= max(n, head) + MIN_PREFIX:  # a template they share too: its KV once, for all of them
                stored = bool(head) and self._note_template(ids, head, shared)
                kv, n = self.get(model, tuple(ids[:shared]), persist=stored), shared
            if head and n == head and tuple(ids[:head]) not in seen:
                seen.add(tuple(ids[:head]))
                keep.append(i)
            self.reused_tokens += n
            self.prompt_tokens += len(ids)
            out.append((n, kv) if n else None)
        return out, keep

    def stored_template(self, model, ids: list[int], head: int) -> tuple[list, int] | None:
        """(KV, length) of the longest stored template of `ids`' task that `ids` starts with, or None.
        A template is the start two prompts of one task share beyond its head (the fixed text of
        the last message before the request's own): its length is listed beside the head's file."""
        _, lengths = self._template_list(tuple(ids[:head]))
        for n in sorted(lengths, reverse=True):
            if head < n < len(ids):
                file = self._file(tuple(ids[:n]))
                entry = self._read(file, model) if file is not None else None
                if entry is not None:
                    self.add(tuple(ids[:n]), entry)
                    return entry, n
        return None

    def _template_list(self, head_ids: tuple[int, ...]) -> tuple[Path | None, list[int]]:
        """The file listing a head's template lengths (None without a cache directory) and those lengths."""
        if head_ids not in self._templates:
            file = self._file(head_ids)
            index = file.with_suffix(".templates") if file is not None else None
            try:
                listed = json.loads(index.read_text()) if index is not None and index.is_file() else []
            except (OSError, ValueError):
                listed = []
            self._templates[head_ids] = index, [v for v in listed if isinstance(v, int)]
        return self._templates[head_ids]

    def _note_template(self, ids: list[int], head: int, n: int) -> bool:
        """Note `ids[:n]` as the template of its task (listed beside the head's file) if no shorter one
        is listed; False when it is not stored (no cache directory, or a shorter template is known).
        The template is the shortest start two prompts of the task share: a longer one found first
        (two requests that begin alike) is replaced, and its file left to the size budget. One per
        head keeps a run's heads and templates (~20 MB each) within the directory's budget."""
        head_ids = tuple(ids[:head])
        index, lengths = self._template_list(head_ids)
        if index is None:
            return False
        if lengths and min(lengths) <= n:
            return n in lengths
        try:
            index.parent.mkdir(parents=True, exist_ok=True)
            tmp = index.with_name(f"{index.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps([n]))
            os.replace(tmp, index)
        except OSError as exc:
            log.warning("prefix cache: could not note a template in %s (%s)", index.name, _one_line(exc))
            return False
        self._templates[head_ids] = index, [n]
        return True

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for entry in self._entries.values() for k, v in entry)


def _tail_groups(tails: list[int]) -> list[list[int]]:
    """Indices grouped by similar tail length (shortest first): a group's tails are padded to its
    longest, which stays within 1.5x its shortest plus 16 tokens."""
    groups: list[list[int]] = []
    for i in sorted(range(len(tails)), key=tails.__getitem__):
        if groups and tails[i] <= 1.5 * tails[groups[-1][0]] + 16:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _common_prefix(a: tuple, b: list, limit: int) -> int:
    """How many first items `a` and `b` share (at most `limit`): a binary search on slices (compared in C)."""
    b = tuple(b[:limit])
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


ROOM = 64  # columns a cache layer grows by when full: one copy per 64 decoding steps, not one per step


def _into(buf, n: int, new):
    """(buffer, length) after writing `new` at column n of `buf` (keys or values, [batch, heads,
    capacity, dim]); a new buffer with ROOM spare columns when it does not fit."""
    t = new.shape[-2]
    if buf is None or buf.dim() != 4 or n == 0:
        buf, n = new.new_empty((*new.shape[:2], t + ROOM, new.shape[3])), 0
    elif n + t > buf.shape[-2]:
        grown = buf.new_empty((*buf.shape[:2], n + t + ROOM, buf.shape[3]))
        grown[:, :, :n] = buf[:, :, :n]
        buf = grown
    buf[:, :, n:n + t] = new
    return buf, n + t


def _packed(parts: list, width: int):
    """One buffer with ROOM spare columns holding `parts` (keys or values, [rows, heads, w <= width,
    dim]) stacked by rows, each right-aligned at `width` with zeros on its left (masked out, but
    never uninitialised memory, which could be NaN): one copy of the rows, where cat or an index
    selection followed by the next step's regrowing made two."""
    first = parts[0]
    rows = sum(part.shape[0] for part in parts)
    buf = first.new_empty((rows, first.shape[1], width + ROOM, first.shape[3]))
    row = 0
    for part in parts:
        n, w = part.shape[0], part.shape[2]
        if w < width:
            buf[row:row + n, :, :width - w].zero_()
        buf[row:row + n, :, width - w:width] = part
        row += n
    return buf


class _Filled:
    """`keys` or `values` of a growing cache layer: the filled columns of its buffer (attribute
    `buffer`, length in `length`); assigning a tensor takes it as it is (filled to its end)."""

    def __init__(self, buffer: str, length: str):
        self.buffer, self.length = buffer, length

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        t = getattr(layer, self.buffer)
        return t if t is None or t.dim() != 4 else t[:, :, :getattr(layer, self.length)]

    def __set__(self, layer, t) -> None:
        setattr(layer, self.buffer, t)
        setattr(layer, self.length, t.shape[-2] if t is not None and t.dim() == 4 else 0)


@functools.cache
def _growing_layer():
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        _k = _v = None
        _nk = _nv = 0
        keys = _Filled("_k", "_nk")
        values = _Filled("_v", "_nv")

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self._k, self._nk = _into(self._k, self._nk, key_states)
            self._v, self._nv = _into(self._v, self._nv, value_states)
            return self.keys, self.values

        def hold(self, keys, values, n: int) -> None:
            """Take `keys` and `values` (buffers with room) as they are, their first n columns filled."""
            self.lazy_initialization(keys, values)
            self._k, self._v, self._nk, self._nv = keys, values, n, n

        def repack(self, keys: list, values: list, width: int) -> None:
            """Keys and values from row blocks (see `_packed`), `width` columns filled."""
            self._k, self._v = _packed(keys, width), _packed(values, width)
            self._nk = self._nv = width

        def place(self, slots: list[int], keys, values) -> None:
            """Rows of keys and values ([len(slots), heads, w, dim], w <= the filled width) written
            into rows `slots`, right-aligned: their last w filled columns; the columns before keep
            what was there (finite, masked out)."""
            n, w = self._nk, keys.shape[-2]
            for i, slot in enumerate(slots):
                self._k[slot, :, n - w:n] = keys[i]
                self._v[slot, :, n - w:n] = values[i]

    return GrowingLayer


def _growing_cache():
    """A DynamicCache whose layers keep their keys and values in buffers with room to grow: a decoding
    step writes its new column in place, where DynamicLayer concatenates, copying the whole cache
    every step (41% of a step at 16 rows of 655 tokens). `keys` and `values` are views of the filled
    columns; merging and dropping rows repack them into a new buffer with room (`repack`); assigning
    them takes the tensor as it is, and the next step moves it into a buffer with room again."""
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layer_class_to_replicate = _growing_layer()
    return cache


def torch_index(rows: list[int], device):
    import torch

    return torch.tensor(rows, dtype=torch.long, device=device)


def _prefilled(prompts: list[list[int]], prefixes: list, pad_id: int, device):
    """The first forward pass's inputs for left-padded `prompts` whose first tokens have cached KV
    (`prefixes`: per row None or (prefix length, per-layer KV)): every row is right-aligned at width
    W; the cache holds positions [0, W - S) (pads, then each row's cached tokens) and the pass computes
    the last S, where S is the longest uncached tail (a row with a shorter tail recomputes a few of its
    cached tokens, as padding would have cost). Returns input ids, the full attention mask, the
    positions of the computed block, and the cache."""
    import torch

    width = max(len(p) for p in prompts)
    tail = max(len(p) - (pre[0] if pre else 0) for p, pre in zip(prompts, prefixes))
    start = width - tail
    cache = _growing_cache()
    kv = next((pre[1] for p, pre in zip(prompts, prefixes) if pre and len(p) > tail), None)
    if kv is not None:  # some row has cached tokens before the block
        # written straight into buffers with room for the block and ROOM more columns: the pass then
        # appends in place (zeroing, then copying into a buffer with room, then growing it for the
        # block copied the whole cache three times: ~1 s for 13 rows of ~700 columns)
        for layer, (k0, v0) in enumerate(kv):
            keys = k0.new_empty((len(prompts), k0.shape[1], width + ROOM, k0.shape[3]))
            values = v0.new_empty((len(prompts), v0.shape[1], width + ROOM, v0.shape[3]))
            for i, (p, pre) in enumerate(zip(prompts, prefixes)):
                used = len(p) - tail
                if used < start:  # zeros on the left (masked out, but never uninitialised memory)
                    keys[i, :, :start - max(used, 0)].zero_()
                    values[i, :, :start - max(used, 0)].zero_()
                if used > 0:
                    keys[i, :, start - used:start] = pre[1][layer][0][0, :, :used]
                    values[i, :, start - used:start] = pre[1][layer][1][0, :, :used]
            cache.layers.append(cache.layer_class_to_replicate())
            cache.layers[layer].hold(keys, values, start)
    else:
        start, tail = 0, width
    input_ids = torch.tensor([[pad_id] * (tail - min(len(p), tail)) + p[-tail:] for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, start:]
    return input_ids, mask, positions, cache


class _Running:
    """The rows generating together (continuous batching): one request per row, one KV cache of full
    layers with every row right-aligned (left-padded). Requests join between steps: their prompts'
    tails are computed in one pass from the cached KV of their shared prefixes (`_prefilled`). Each
    row leaves, answered at once, at its own stop string, EOS, token budget or deadline, so a
    caller's next request can join while the others still generate.

    A row that leaves becomes a free slot: it stays in the cache (still computed, its tokens
    unused) and the next request that fits takes it, its KV written into that row's last columns,
    so a join or a leave copies only the joining rows, where repacking the whole cache took
    80-150 ms each at 16 rows of ~750 columns (5 s of a 30 s evolve round at concurrency 16).
    The cache is repacked (`_compact`: free slots dropped, columns no row reads any more cut) only
    when a joining group does not fit (no free slot, or a wider prompt), when a slot stayed free
    `idle_steps` steps (fewer callers left), or when the unread columns on the left reach
    a quarter of the width."""

    window = 32  # a stop string shows up within the text of the last `window` new tokens
    idle_steps = 4  # a slot free this many steps is dropped (a caller's next request comes within 1-2)

    def __init__(self, backend: "LocalBackend", tokenizer, model):
        self.backend, self.tokenizer, self.model = backend, tokenizer, model
        self.few_shot = not tokenizer.chat_template
        self.eos_ids = _eos_ids(tokenizer, model)
        pad = _pad_id(tokenizer)
        self.pad = pad if pad is not None else 0
        # per row of the cache; None in a free slot
        self.requests: list[_Request | None] = []
        self.prompts: list[list[int] | None] = []
        self.stops: list[list[str] | None] = []
        self.tokens: list[list[int] | None] = []
        self.free: dict[int, int] = {}  # free slot -> the step it was freed at
        self.steps = 0
        self.cache = self.mask = self.positions = self.next_ids = None

    def __len__(self) -> int:
        """Rows generating (free slots not counted)."""
        return len(self.requests) - len(self.free)

    def _live(self) -> list[int]:
        return [j for j, r in enumerate(self.requests) if r is not None]

    def admit(self, requests: list[_Request]) -> None:
        """Prefill `requests` and add them as rows: in groups of similar uncached tails, so a short
        tail is not padded to a long one's length. A group goes into free slots where it fits; the
        groups that do not are added in one repack of the cache (one per group cost 0.3-0.4 s each
        at 16 rows of ~700 columns)."""
        encoded = [_encode(self.tokenizer, r.messages, self.few_shot) for r in requests]
        prefixes, keep = self.backend.prefixes.prefixes(self.model, encoded)
        tails = [len(ids) - (pre[0] if pre else 0) for (ids, _), pre in zip(encoded, prefixes)]
        unplaced = []
        for group in _tail_groups(tails):
            rows = [requests[i] for i in group]
            prompts = [encoded[i][0] for i in group]
            filled = self._prefill(rows, prompts, [prefixes[i] for i in group], [i in keep for i in group])
            slots = self._place(*filled)
            if slots is None:
                unplaced.append((rows, prompts, filled))
            else:
                self._add_rows(slots, rows, prompts, filled[3])
        if unplaced:
            self._compact()
            first = len(self.requests)
            self._merge([filled for _, _, filled in unplaced])
            for name in ("requests", "prompts", "stops", "tokens"):
                getattr(self, name).extend([None] * (len(self.mask) - first))
            for rows, prompts, filled in unplaced:
                self._add_rows(list(range(first, first + len(rows))), rows, prompts, filled[3])
                first += len(rows)
        self.backend.batches.append(len(requests))
        admitted = {id(r) for r in requests}  # rows found by request: a merge's compaction moves rows
        self._leave([j for j, r in enumerate(self.requests) if r is not None and id(r) in admitted and self._done(j)])

    def _prefill(self, requests: list[_Request], prompts: list[list[int]], prefixes: list,
                 remember: list[bool]) -> tuple:
        """Compute the prompts' tails: (cache, mask, positions, first new token ids) of their rows."""
        import torch

        input_ids, mask, positions, cache = _prefilled(prompts, prefixes, self.pad, self.model.device)
        with torch.inference_mode():
            out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache,
                             use_cache=True, logits_to_keep=1)
        for i in (i for i, yes in enumerate(remember) if yes):  # whole prompts, for later requests of those tasks
            n = len(prompts[i])
            self.backend.prefixes.add(tuple(prompts[i]), [(layer.keys[i:i + 1, :, -n:].clone(),
                                                           layer.values[i:i + 1, :, -n:].clone())
                                                          for layer in cache.layers])
        return cache, mask, positions[:, -1:], _next_tokens(out.logits[:, -1], requests)

    def _add_rows(self, slots: list[int], requests: list[_Request], prompts: list[list[int]], next_ids) -> None:
        for slot, r, prompt, token in zip(slots, requests, prompts, next_ids.tolist()):
            self.requests[slot], self.prompts[slot], self.tokens[slot] = r, prompt, [token]
            self.stops[slot] = [FEW_SHOT_STOP, *r.stops] if self.few_shot else r.stops

    def _place(self, cache, mask, positions, next_ids) -> list[int] | None:
        """The free slots a prefilled group was written into (only its rows are copied), or None
        when there are too few or the group is wider than the cache."""
        rows, width = mask.shape
        if self.cache is None or len(self.free) < rows or width > self.mask.shape[1]:
            return None
        import torch

        slots = sorted(self.free)[:rows]
        for slot in slots:
            del self.free[slot]
        with torch.inference_mode():  # the buffers a forward pass made are inference tensors
            for mine, theirs in zip(self.cache.layers, cache.layers):
                mine.place(slots, theirs.keys, theirs.values)
            for i, slot in enumerate(slots):
                self.mask[slot, :-width].zero_()
                self.mask[slot, -width:] = mask[i]
            index = torch_index(slots, self.mask.device)
            self.positions[index], self.next_ids[index] = positions, next_ids
        self.backend.placed += rows
        return slots

    def step(self) -> None:
        """One new token for every row; rows that are done leave."""
        import torch

        mask = torch.cat([self.mask, self.mask.new_ones((len(self.requests), 1))], dim=1)
        positions = self.positions + 1
        with torch.inference_mode():
            out = self.model(input_ids=self.next_ids[:, None], attention_mask=mask, position_ids=positions,
                             cache=self.cache, use_cache=True, logits_to_keep=1)
        self.mask, self.positions = mask, positions
        self.steps += 1
        live = self._live()
        if len(live) == len(self.requests):
            self.next_ids = _next_tokens(out.logits[:, -1], self.requests)
        else:  # free slots keep feeding their last token (their output is not read)
            index = torch_index(live, mask.device)
            with torch.inference_mode():
                self.next_ids[index] = _next_tokens(out.logits[index, -1], [self.requests[j] for j in live])
        tokens = self.next_ids.tolist()
        for j in live:
            self.tokens[j].append(tokens[j])
        self._leave([j for j in live if self._done(j)])
        if self.free and self.steps - min(self.free.values()) >= self.idle_steps:
            self._compact()

    def fail(self, exc: Exception) -> None:
        for r in self.requests:
            if r is not None and not r.future.done():
                r.future.set_exception(exc)
        self._reset()

    def _reset(self) -> None:
        self.requests, self.prompts, self.stops, self.tokens = [], [], [], []
        self.free = {}
        self.cache = self.mask = self.positions = self.next_ids = None

    def _merge(self, groups: list[tuple]) -> None:
        """Add prefilled groups' rows ((cache, mask, positions, next ids) each) after the rows there
        are, in one copy: every part is left-padded to the widest one's width."""
        import torch

        if self.cache is None and len(groups) == 1:
            self.cache, self.mask, self.positions, self.next_ids = groups[0]
            return
        parts = ([(self.cache, self.mask, self.positions, self.next_ids)] if self.cache is not None else []) + groups
        width = max(mask.shape[1] for _, mask, _, _ in parts)

        def pad(t):  # zeros on the left up to `width` columns
            return torch.cat([t.new_zeros((t.shape[0], width - t.shape[1])), t], dim=1) if t.shape[1] < width else t

        target = parts[0][0]
        for i, layer in enumerate(target.layers):
            layer.repack([c.layers[i].keys for c, *_ in parts], [c.layers[i].values for c, *_ in parts], width)
        self.backend.repacks += 1
        self.cache = target
        self.mask = torch.cat([pad(mask) for _, mask, _, _ in parts])
        self.positions = torch.cat([positions for _, _, positions, _ in parts])
        self.next_ids = torch.cat([ids for *_, ids in parts])

    def _done(self, j: int) -> bool:
        ids, r = self.tokens[j], self.requests[j]
        return (len(ids) >= r.max_tokens or ids[-1] in self.eos_ids or time.monotonic() >= r.deadline
                or bool(self.stops[j]) and cut_at_stop(self.tokenizer.decode(
                    ids[-self.window:], skip_special_tokens=True), self.stops[j])[1])

    def _leave(self, done: list[int]) -> None:
        """Answer the rows in `done` and free their slots; the cache is repacked when the columns no
        live row reads reach a quarter of its width (`_compact`)."""
        for j in done:
            self._answer(j)
            self.requests[j] = self.prompts[j] = self.stops[j] = self.tokens[j] = None
            self.free[j] = self.steps
        if not done:
            return
        if not len(self):
            self._reset()
            return
        live = torch_index(self._live(), self.mask.device)
        if int(self.mask[live].any(0).int().argmax()) * 4 >= self.mask.shape[1]:
            self._compact()

    def _compact(self) -> None:
        """Drop the free slots from the batch and its cache, and the columns no row reads any more."""
        if not self.free or self.cache is None:
            return
        keep = self._live()
        for name in ("requests", "prompts", "stops", "tokens"):
            setattr(self, name, [getattr(self, name)[j] for j in keep])
        self.free = {}
        index = torch_index(keep, self.mask.device)
        self.mask, self.positions, self.next_ids = self.mask[index], self.positions[index], self.next_ids[index]
        first = int(self.mask.any(0).int().argmax())  # the first column some row attends to
        self.mask = self.mask[:, first:]
        rows = [(j, j + 1) for j in keep]  # runs of kept rows, each copied as one block
        for j in range(len(rows) - 1, 0, -1):
            if rows[j - 1][1] == rows[j][0]:
                rows[j - 1:j + 1] = [(rows[j - 1][0], rows[j][1])]
        for layer in self.cache.layers:
            layer.repack([layer.keys[a:b, :, first:] for a, b in rows], [layer.values[a:b, :, first:] for a, b in rows],
                         self.mask.shape[1])
        self.backend.repacks += 1

    def _answer(self, j: int) -> None:
        ids, r = self.tokens[j], self.requests[j]
        text, stopped = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), self.stops[j])
        cut_off = len(ids) >= r.max_tokens and not stopped and not (ids and ids[-1] in self.eos_ids)
        self.backend.generations += 1
        r.future.set_result(Completion(text.strip() if self.few_shot else text, len(self.prompts[j]), len(ids),
                                       "length" if cut_off else "stop"))


class LocalBackend:
    """A transformers causal LM running in this process, generating in batches."""

    in_process = True

    def __init__(self, model_dir: str | Path, *, cache_dir: str | Path | None = None, batch_size: int = 16,
                 batch_wait_s: float = 0.02):
        self.model_dir = str(model_dir)
        self.cache_dir = cache_dir
        self.model = self.model_dir
        self.identity = f"local|{self.model_dir}" if self.is_embedded else f"local|{_fingerprint(Path(model_dir))}"
        self.batch_size, self.batch_wait_s = max(1, batch_size), batch_wait_s
        self.generations = 0  # requests generated (a cached answer makes none)
        self.batches: list[int] = []  # the size of each batch generated
        self.placed = 0  # requests that joined into a free slot (nothing else copied)
        self.repacks = 0  # times the running rows' cache was copied whole (a join that did not fit, a compaction)
        self._model = None
        self._tokenizer = None
        self.precision: str | None = None  # how the weights run, once loaded (see local_precision)
        self.load_s: float | None = None  # seconds the load took (imports, weights, int8 packing, tokenizer)
        self._load_lock = threading.Lock()
        # starting and ending the generation thread: never held while loading, so a call made during the
        # load (its deadline already set) does not block the caller's event loop for the whole load
        self._worker_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        # shared prompt prefixes' KV (used by the generation thread only); task heads persist in the cache dir
        self.prefixes = PrefixCache(directory=Path(cache_dir) / "prefix-kv" if cache_dir is not None else None)
        self._closing = False  # the generation thread saw the close while rows were generating

    @property
    def max_concurrency(self) -> int:
        """In flight at once: one batch (more would only wait in the queue)."""
        return self.batch_size

    @classmethod
    def embedded(cls, cache_dir: str | Path) -> "LocalBackend":
        """The embedded Gemma 3 270M (converted into `cache_dir` on first load)."""
        return cls(EMBEDDED_NAMES[1], cache_dir=cache_dir)

    @property
    def is_embedded(self) -> bool:
        return self.model_dir in EMBEDDED_NAMES

    @property
    def few_shot(self) -> bool:
        """A base model (no chat template): tasks add worked examples; prompts are plain text."""
        if self._tokenizer is not None:
            return not self._tokenizer.chat_template
        return self.is_embedded or not _has_chat_template(Path(self.model_dir))

    # -- loading ---------------------------------------------------------------
    def load(self) -> None:
        """Load model and tokenizer now (idempotent, thread-safe); a bad model dir -> PermanentError."""
        self._loaded()

    def _loaded(self):
        with self._load_lock:
            if self._model is None:
                start = time.perf_counter()
                path = self._resolve()
                self.precision = local_precision(self.is_embedded)
                self._tokenizer, self._model = _load_pretrained(path, self.precision, plain_tokenizer=self.is_embedded)
                self.prefixes.salt = _weights_key(path, self.precision)
                self.load_s = time.perf_counter() - start
                log.info("loaded %s (%s) in %.1f s", path, self.precision, self.load_s)
            return self._tokenizer, self._model

    def warm(self) -> threading.Thread:
        """Start loading in a background thread (errors are logged; the first call reports them again)."""
        def run():
            try:
                self.load()
            except PermanentError as exc:
                log.warning("could not preload %s: %s", self.model_dir, exc)

        thread = threading.Thread(target=run, name=f"load {self.model}", daemon=True)
        thread.start()
        return thread

    def _resolve(self) -> Path:
        try:
            from wizardlab.training.base_models import resolve_model

            return Path(resolve_model(self.model_dir, self.cache_dir or _default_cache_dir(), allow_hub=False))
        except UserError as exc:
            raise PermanentError(str(exc)) from None
        except OSError as exc:  # converting the embedded model failed (disk full, permissions ...)
            raise PermanentError(f"model {self.model_dir}: {_one_line(exc)}") from exc

    # -- generation ------------------------------------------------------------
    async def chat(self, messages, *, max_tokens, temperature, stop, timeout, top_p=None, seed=None) -> Completion:
        request = _Request(messages, max_tokens, temperature, list(stop or []), time.monotonic() + timeout, top_p,
                           seed)
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._closing = False
                self._worker = threading.Thread(target=self._serve, name=f"generate {self.model}", daemon=True)
                self._worker.start()
        self._queue.put(request)
        return await asyncio.wrap_future(request.future)

    def _serve(self) -> None:
        """The generation thread: rows generate step by step (`_Running`); requests that wait join
        between steps while there is room; when no row is left it waits for the next burst (gathered
        for `batch_wait_s`). None in the queue ends it once the rows it holds are answered."""
        running: _Running | None = None
        while True:
            if running is None or not len(running):
                if self._closing:
                    return
                first = self._queue.get()
                if first is None:
                    return
                new = self._gather(first)
            else:
                new = self._waiting(self.batch_size - len(running))
            new = self._startable(new)
            try:
                if new:
                    running = running or _Running(self, *self._loaded())
                    running.admit(new)
                if running is not None and len(running):
                    running.step()
            except (PermanentError, TransientError) as exc:
                self._fail(running, new, exc)
            except Exception as exc:  # noqa: BLE001 - an unexpected error must reach the callers, not kill the thread
                self._fail(running, new, PermanentError(f"local model {self.model}: generation failed: "
                                                        f"{_one_line(exc)}"))

    def _fail(self, running, new: list[_Request], exc: Exception) -> None:
        for r in new:
            if not r.future.done():
                r.future.set_exception(exc)
        if running is not None:
            running.fail(exc)

    def _startable(self, batch: list[_Request]) -> list[_Request]:
        """The requests still wanted (a cancelled call is dropped) and in time (else a timeout error)."""
        now, out = time.monotonic(), []
        for r in batch:
            if not r.future.set_running_or_notify_cancel():
                continue
            if r.deadline <= now:
                r.future.set_exception(TransientError("timeout: the model was still loading or busy"))
            else:
                out.append(r)
        return out

    def _waiting(self, room: int) -> list[_Request]:
        """Up to `room` requests that wait now; notes a close."""
        found = []
        while len(found) < room:
            try:
                r = self._queue.get_nowait()
            except queue.Empty:
                break
            if r is None:
                self._closing = True
                break
            found.append(r)
        return found

    def _gather(self, first: _Request) -> list[_Request]:
        """`first` and the requests that wait now or arrive less than batch_wait_s after the one before."""
        batch = [first]
        start = time.monotonic()
        until = start + self.batch_wait_s
        while len(batch) < self.batch_size:
            try:
                r = self._queue.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                break
            if r is None:  # closing: answer this batch first
                self._queue.put(None)
                break
            batch.append(r)
            # callers answered by the last batch come back one after another: wait for the next one a
            # little longer, but never more than 10 x batch_wait_s in all (a batch takes seconds anyway)
            until = min(time.monotonic() + self.batch_wait_s, start + 10 * self.batch_wait_s)
        return batch

    async def aclose(self, join_s: float = 30.0) -> None:
        """End the generation thread (it answers what it holds first) and wait for it, up to `join_s`:
        a process that exits while that thread is inside a torch op can abort ("terminate called
        without an active exception") instead of exiting cleanly."""
        with self._worker_lock:
            worker, self._worker = self._worker, None
            if worker is not None:
                self._queue.put(None)
        if worker is not None and worker.is_alive():
            await asyncio.to_thread(worker.join, join_s)
        with self._load_lock:
            self._model = self._tokenizer = None


MIN_PREFIX = 32  # shorter shared prefixes are recomputed (a cached entry is not worth its bookkeeping)


def _encode(tokenizer, messages: list[dict], few_shot: bool) -> tuple[list[int], int]:
    """Prompt ids (plain text for a base model, else the tokenizer's chat template with a generation
    prompt), and how many of the first ids are the turns before the last message (system prompt and
    worked examples, shared by the requests of one task: their KV is cached), 0 when too few."""
    if few_shot:
        ids = tokenizer(render_plain(messages)).input_ids
        head = lambda: tokenizer(_plain_turns(messages[:-1])).input_ids  # noqa: E731
    else:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        head = lambda: tokenizer(tokenizer.apply_chat_template(  # noqa: E731
            messages[:-1], tokenize=False), add_special_tokens=False).input_ids
    if len(messages) < 2:
        return ids, 0
    try:
        head_ids = head()
    except Exception:  # noqa: BLE001 - a template that refuses a conversation cut there: no shared prefix
        return ids, 0
    shared = 0  # ids and head_ids part where tokenization across the cut differs
    for a, b in zip(ids[:len(ids) - 1], head_ids):
        if a != b:
            break
        shared += 1
    return ids, shared if shared >= MIN_PREFIX else 0


def _eos_ids(tokenizer, model) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return {i for i in ids if i is not None}


PRECISIONS = ("float32", "bfloat16", "int8")


def local_precision(embedded: bool) -> str:
    """How the weights run: bfloat16 on a CPU with bfloat16 instructions (AVX512-BF16 or AMX) or a
    bf16-capable GPU; on other CPUs the embedded model's linear layers run in int8 (dynamic
    quantization, the embedded weights being a 4-bit GGUF anyway: measured here ~2.3x faster per
    step at 1 to 16 sequences) and any other checkpoint in float32 (its answers as trained, for
    evaluation). `WIZARDLAB_LOCAL_DTYPE=float32|bfloat16|int8` decides instead."""
    import torch

    forced = os.environ.get("WIZARDLAB_LOCAL_DTYPE", "").strip().lower()
    if forced in PRECISIONS:
        return forced
    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    from wizardlab.config import cpu_has_bf16

    return "bfloat16" if cpu_has_bf16() else "int8" if embedded else "float32"


HEAD_BLOCK = 32_768  # rows of the output layer packed as one int8 matrix (fbgemm packs big ones slowly)


def _int8(model):
    """The model with its linear layers quantized to int8 in place, on the CPU (`RowScaledLinear`:
    each input row scaled to its own range first); the model as it is where this torch cannot
    (torch.ao's eager quantization is deprecated, not yet removed). The output layer (Gemma's:
    262,144 x 640) is packed in a second thread meanwhile (packing runs without the GIL), in blocks
    of rows (`_int8_head`)."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation, and a note on per-tensor quantization
            if not isinstance(head, torch.nn.Linear):
                return _int8_layers(model)
            model.set_output_embeddings(torch.nn.Identity())  # out of the tree the main thread converts
            try:
                with ThreadPoolExecutor(1, thread_name_prefix="int8 head") as pool:
                    packed = pool.submit(_int8_head, head)
                    _int8_layers(model)
                    head = packed.result()
            finally:
                model.set_output_embeddings(head)
            return model
    except (AttributeError, ImportError, RuntimeError) as exc:
        log.warning("int8 quantization unavailable here (%s): the model runs in float32", _one_line(exc))
        return model


def _int8_layers(module):
    """`module`'s linear layers as `RowScaledLinear`, in place (torch's dynamic quantization)."""
    import torch

    biases = {name: None if m.bias is None else m.bias.detach().float()
              for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)}
    torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    row_scaled = _row_scaled_linear()
    for name, m in module.named_modules():
        if name in biases and isinstance(m, torch.ao.nn.quantized.dynamic.Linear):
            m.__class__ = row_scaled
            m.row_bias = biases[name]
            m.row_sums = _int8_row_sums(m)
    return module


def _int8_head(head):
    """The output layer as int8 `RowScaledLinear`, in blocks of HEAD_BLOCK rows (`Int8Rows`) when it
    has more: fbgemm packs a 262,144 x 640 matrix in 2.7-3 s and eight blocks of it in 0.9 s, whose
    products take the same time. Every block is quantized with the scale of the whole weight (the
    observer `quantize_dynamic` uses), so the logits are those of one int8 matrix."""
    import torch

    weight = head.weight.detach().float()
    bias = None if head.bias is None else head.bias.detach().float()
    observer = torch.ao.quantization.default_dynamic_qconfig.weight()
    observer(weight)
    scale, zero_point = (float(v) for v in observer.calculate_qparams())
    row_scaled, blocks = _row_scaled_linear(), []
    for start in range(0, weight.shape[0], HEAD_BLOCK):
        rows = weight[start:start + HEAD_BLOCK]
        block = row_scaled(1, 1, bias_=False, dtype=torch.qint8)  # 1 x 1: its constructor packs a zero weight
        block.in_features, block.out_features = weight.shape[1], rows.shape[0]
        block.row_bias = None if bias is None else bias[start:start + HEAD_BLOCK]
        block.set_weight_bias(torch.quantize_per_tensor(rows, scale, int(zero_point), torch.qint8), block.row_bias)
        block.row_sums = _int8_row_sums(block)
        blocks.append(block)
    return blocks[0] if len(blocks) == 1 else _int8_rows()(blocks)


def _int8_row_sums(linear):
    """Row sums of an int8 linear layer's weights as its product sees them (W 1: the product with
    a row of ones, exact in int8, minus the bias): the row-scaled product subtracts c W 1 from c W 1
    computed inside the int8 product, so both must see the same weights (the float weights' sums
    differ by up to 0.4 per row on Gemma, which, times a row's midpoint, turned the output into
    noise). One matrix-vector product, where dequantizing the weights to sum them took 1 s for
    Gemma's output layer."""
    import torch

    ones = torch.ones(1, linear.in_features)
    sums = torch.ops.quantized.linear_dynamic(ones, linear._packed_params._packed_params, reduce_range=True)[0]
    return sums if linear.row_bias is None else sums - linear.row_bias


@functools.cache
def _int8_rows():
    import torch

    class Int8Rows(torch.nn.Module):
        """An output layer as int8 blocks of rows, their outputs joined along the last dimension."""

        def __init__(self, blocks):
            super().__init__()
            self.blocks = torch.nn.ModuleList(blocks)
            self.in_features = blocks[0].in_features
            self.out_features = sum(b.out_features for b in blocks)

        def forward(self, x):
            return torch.cat([block(x) for block in self.blocks], dim=-1)

    return Int8Rows


@functools.cache
def _row_scaled_linear():
    import torch
    from torch.ao.nn.quantized.dynamic import Linear

    class RowScaledLinear(Linear):
        """An int8 linear layer whose input rows (tokens) are each mapped onto [0, 1] by their own
        range before quantization, and the product mapped back: W x = s W u + l W 1, with l and s
        the row's minimum and span and W 1 the int8 weights' row sums (`row_sums`; the bias,
        kept as `row_bias` because `bias()` unpacks the whole weight, is added after). torch's
        dynamic quantization takes one activation scale for the whole input, so one row's range (an
        outlier token, Gemma's first token above all) set every other row's precision, and a row's
        output depended on what shared its batch. With each row on the same [0, 1] the scale is
        fixed: a prompt's rows give the same output alone or in any batch, each quantized to its range
        (Gemma 3 270M against float32 on 9 real few-shot prompts, 4,051 positions: mean KL 0.39 ->
        0.08, next-token agreement 80% -> 89%). That is for prompts (prefill, where the outlier
        tokens are and the KV cache is written), whose products outweigh the few extra small ops.
        A decoding step (one token a row, bound by reading the weights) keeps torch's own path:
        scaling there cost 15-18% of each step (the output layer's 262,144 logits a row twice more),
        and a step's rows are alike in range."""

        row_sums = row_bias = None

        def forward(self, x):
            if x.dim() > 2 and x.shape[-2] == 1:  # a decoding step (one token a row): torch's own path
                return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, reduce_range=True)
            lo, hi = torch.aminmax(x, dim=-1, keepdim=True)
            span = (hi - lo).clamp_min_(1e-12)
            # u = (x - lo) / span is exactly 0 and 1 at each row's ends (span / span == 1), so the
            # scale torch derives from the whole input's range is the same in every batch
            y = torch.ops.quantized.linear_dynamic((x - lo).div_(span), self._packed_params._packed_params,
                                                   reduce_range=True)
            if self.row_bias is not None:
                y -= self.row_bias
            y = y.mul_(span).addcmul_(lo, self.row_sums)  # W x = span W u + lo W 1
            return y if self.row_bias is None else y.add_(self.row_bias)

    return RowScaledLinear


class PlainTokenizer:
    """A base model's tokenizer read straight from its tokenizer.json by the `tokenizers` library
    (Rust), with what generation asks of it: encoding text (with the model's special tokens),
    decoding, the EOS and pad ids, no chat template. 2 s for Gemma's 262K vocabulary where
    transformers' class takes 5-7 s (it parses the file in Python, twice). Used for the embedded
    model, whose directory is built here; a test checks it tokenizes and decodes as transformers does."""

    chat_template = None

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        config = json.loads((path / "tokenizer_config.json").read_text())

        def special(name: str) -> int | None:
            token = config.get(name)
            token = token.get("content") if isinstance(token, dict) else token
            return self._tokenizer.token_to_id(token) if token else None

        self.bos_token_id, self.eos_token_id, self.pad_token_id = (special(name) for name in
                                                                   ("bos_token", "eos_token", "pad_token"))

    def __call__(self, text: str, add_special_tokens: bool = True) -> types.SimpleNamespace:
        return types.SimpleNamespace(input_ids=self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)


def _load_pretrained(path: Path, precision: str = "float32", plain_tokenizer: bool = False):
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise PermanentError(f"local model {path}: no config.json (not a transformers checkpoint directory)")
    on_gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
        if on_gpu:
            model = model.to("cuda")
        model.eval()
        _use_windowed_attention(model)
        # the tokenizer (Gemma's: seconds of JSON parsing in Python) loads in a second thread while the
        # weights are packed for int8 (which runs without the GIL); alongside the weights' own loading
        # it would slow that down as much as it saves
        with ThreadPoolExecutor(1, thread_name_prefix="tokenizer") as pool:
            tokenizer = (pool.submit(PlainTokenizer, path) if plain_tokenizer
                         else pool.submit(AutoTokenizer.from_pretrained, path, local_files_only=True))
            if precision == "int8" and not on_gpu:
                model = _int8(model)
            tokenizer = tokenizer.result()
    except (OSError, ValueError, KeyError) as exc:
        raise PermanentError(f"local model {path}: cannot load: {_one_line(exc)}") from exc
    return tokenizer, model


WINDOWED = "wizardlab_windowed_sdpa"


@functools.cache
def _windowed_attention() -> str:
    """Register (once) SDPA attention that reads only a sliding-window layer's window when decoding.

    Gemma 3's local layers (5 of every 6) attend to the last `sliding_window` positions, but the
    cache keeps every column (one cache of full layers for all rows) and SDPA would read them all,
    masked: at 16 rows of ~700 columns, a decoding step's attention is most of its memory traffic.
    Rows are right-aligned with their tokens contiguous, so for one new token the last
    `sliding_window` columns hold all of its window: those keys, values and mask columns are the
    same attention, exactly. Everything else (prefill, full layers) is plain SDPA."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    def attention(module, query, key, value, attention_mask, *args, sliding_window=None, **kwargs):
        keep = (sliding_window or 0) + 1  # one column more than any model's window convention needs
        if sliding_window and query.shape[2] == 1 and key.shape[2] > keep:
            key, value = key[:, :, -keep:], value[:, :, -keep:]
            if attention_mask is not None and attention_mask.shape[-1] > keep:
                attention_mask = attention_mask[..., -keep:]
        return sdpa_attention_forward(module, query, key, value, attention_mask, *args,
                                      sliding_window=sliding_window, **kwargs)

    AttentionInterface.register(WINDOWED, attention)
    AttentionMaskInterface.register(WINDOWED, sdpa_mask)  # the same masks as SDPA
    return WINDOWED


def _use_windowed_attention(model) -> None:
    """Windowed decoding attention for a model on SDPA with sliding-window layers (Gemma 2/3,
    Mistral-style configs); others are left as they are."""
    config = model.config
    if config._attn_implementation != "sdpa" or not getattr(config, "sliding_window", None):
        return
    if "sliding_attention" not in (getattr(config, "layer_types", None) or ["sliding_attention"]):
        return
    model.set_attn_implementation(_windowed_attention())


def _has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((path / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def _fingerprint(path: Path) -> str:
    """Directory and newest weight/config mtime: a retrained checkpoint gets a new cache identity."""
    resolved = path.expanduser().resolve()
    files = [*resolved.glob("*.safetensors"), *resolved.glob("*.bin"), resolved / "config.json"]
    stamps = [f.stat().st_mtime_ns for f in files if f.is_file()]
    return f"{resolved}|{max(stamps) if stamps else 0}"


KV_NUMERICS = 3  # raise when this module changes how a prompt's KV is computed (2: row-scaled int8; 3: its row sums from the int8 product)


def _weights_key(path: Path, precision: str) -> str:
    """What a prompt's KV depends on besides its tokens: the weights (path and time stamp), how they
    run (precision, this module's numerics), and the libraries computing it."""
    import torch
    import transformers

    return (f"{_fingerprint(path)}|{precision}|numerics {KV_NUMERICS}|torch {torch.__version__}"
            f"|transformers {transformers.__version__}")


def _pad_id(tokenizer) -> int | None:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _default_cache_dir() -> Path:
    from wizardlab.config import default_cache_dir

    return default_cache_dir()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
