"""Continuous batching for greedy decoding: a fixed set of slots over a preallocated KV cache.

Every row of a batch lives in a slot. A slot's sequence starts at column 0 of its cache row and
has its own position, so rows of different lengths decode side by side; a row that stops (end of
sequence or its token budget) frees its slot at once, and the slot is refilled from the queue by
a prefill of new prompts while the other rows keep going. Plain `generate()` instead keeps
decoding finished rows until the longest row of the batch is done.

Only torch and transformers are imported here, so the GPU benchmark runs without the rest of
the project. The decode step has fixed shapes (slots x 1 token over a column bucket of the
cache), which is what lets it be captured as a CUDA graph (or compiled) on a GPU.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel


class SlotKVCache:
    """Per-layer [slots, kv_heads, max_len, head_dim] key/value tensors, written in place.

    Duck-types the `update()` of a transformers Cache. Three modes:
    - prefix capture (`capturing_prefix`): keep the shared prefix's keys/values (one row) in `prefix`;
    - prefill (`prefill_slots` set): write the prompts (after the shared prefix, if any) into their
      slots, with the prefix copied in front; return the prefix + prompt keys/values (a prompt
      attends only to itself);
    - decode: write one token for each of the first n slots at that slot's position, return their
      first `limit` columns (the attention mask hides each slot's columns past its position).
    """

    def __init__(self, model: PreTrainedModel, slots: int, max_len: int) -> None:
        cfg = model.config.get_text_config()
        kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        shape = (slots, kv_heads, max_len, head_dim)
        opts = {"dtype": model.dtype, "device": model.device}
        self.keys = [torch.zeros(shape, **opts) for _ in range(cfg.num_hidden_layers)]
        self.values = [torch.zeros(shape, **opts) for _ in range(cfg.num_hidden_layers)]
        self.rows = torch.arange(slots, device=model.device)
        self.write_pos = torch.zeros(slots, dtype=torch.long, device=model.device)
        self.prefill_slots: torch.Tensor | None = None
        self.capturing_prefix = False
        self.prefix: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer, [1, kv_heads, P, head_dim]
        self.prefix_len = 0
        self.limit = max_len
        if model.device.type == "cuda":  # fixed addresses: required for CUDA graph replay / cudagraph trees
            for t in (*self.keys, *self.values, self.rows, self.write_pos):
                torch._dynamo.mark_static_address(t)

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self.capturing_prefix:
            del self.prefix[layer_idx:]
            self.prefix.append((key.clone(), value.clone()))
            return key, value
        if self.prefill_slots is not None:
            if self.prefix_len:
                pk, pv = self.prefix[layer_idx]
                key = torch.cat([pk.expand(key.shape[0], -1, -1, -1), key], dim=2)
                value = torch.cat([pv.expand(value.shape[0], -1, -1, -1), value], dim=2)
            n = key.shape[2]
            keys[self.prefill_slots, :, :n] = key
            values[self.prefill_slots, :, :n] = value
            return key, value
        n = key.shape[0]  # live rows are packed into the first slots: views, no copy
        keys[self.rows[:n], :, self.write_pos[:n]] = key[:, :, 0]
        values[self.rows[:n], :, self.write_pos[:n]] = value[:, :, 0]
        return keys[:n, :, : self.limit], values[:n, :, : self.limit]

    def move(self, src: int, dst: int) -> None:
        """Copy one slot's keys/values into another (packing live rows into the first slots)."""
        for keys, values in zip(self.keys, self.values):
            keys[dst] = keys[src]
            values[dst] = values[src]


@dataclass
class BatchStats:
    """What one `run()` did: the figures an operator and the benchmark look at."""

    requests: int = 0
    new_tokens: int = 0
    decode_steps: int = 0
    prefill_calls: int = 0
    prompt_tokens: int = 0  # tokens of all prompts (after truncation to the cache)
    prefill_tokens: int = 0  # prompt tokens run through the model (the shared prefix once)
    shared_prefix: int = 0  # tokens of the common prompt prefix computed once for the run
    busy_slot_steps: int = 0  # sum over decode steps of the slots holding a live row
    slot_steps: int = 0
    seconds: float = 0.0

    @property
    def slot_utilisation(self) -> float:
        return self.busy_slot_steps / self.slot_steps if self.slot_steps else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


@dataclass
class _Row:
    index: int
    budget: int
    tokens: list[int] = field(default_factory=list)


class ContinuousBatcher:
    """Greedy decoding of many prompts through `slots` rows of one KV cache.

    continuous: refill freed slots while others decode (False: wait until every slot is free,
    i.e. static batching that still stops early per batch). sort_by_length: take prompts in
    length order so a prefill group pads little (length bucketing). cuda_graphs: capture the
    decode step per (row bucket, column bucket) and replay it. compile: torch.compile the decode step.
    Live rows are kept packed in the first slots (a finishing row's slot takes the last live row),
    so a decode step computes only the live rows, rounded up to `row_bucket` (for graphs).
    Prompts rendered from one template share their first tokens (chat header, system prompt): with
    share_prefix, the keys/values of the run's common prefix are computed once and copied into each
    slot, so a refill prefills only each prompt's own tail.
    """

    def __init__(self, model: PreTrainedModel, *, slots: int = 32, max_len: int = 512,
                 eos_token_ids: Sequence[int] = (), continuous: bool = True, sort_by_length: bool = True,
                 refill_min: int | None = None, column_bucket: int = 64, row_bucket: int | None = None,
                 cuda_graphs: bool | None = None, compile: bool = False, share_prefix: bool = True,
                 min_shared_prefix: int = 4, token_bias: dict[int, float] | None = None) -> None:
        self.model = model
        self.decoder = model.get_decoder()
        self.lm_head = model.get_output_embeddings()
        self.slots, self.max_len = slots, max_len
        self.eos = set(int(t) for t in eos_token_ids)
        self.continuous, self.sort_by_length = continuous, sort_by_length
        self.share_prefix, self.min_shared_prefix = share_prefix, min_shared_prefix
        self._prefix_ids: list[int] = []
        self.refill_min = refill_min or max(1, slots // 8)
        self.column_bucket = column_bucket
        self.cuda_graphs = model.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        # Graphs need few distinct shapes; eager CPU decoding is cheapest at the exact row count.
        self.row_bucket = row_bucket or (min(16, slots) if self.cuda_graphs or compile else 1)
        self.cache = SlotKVCache(model, slots, max_len)
        self._cols = torch.arange(max_len, device=model.device)
        self._tokens = torch.zeros(slots, dtype=torch.long, device=model.device)
        # added to the logits before the greedy pick (a prompt version's label bias), None when empty
        self.bias: torch.Tensor | None = None
        if token_bias:
            self.bias = torch.zeros(self.lm_head.out_features, device=model.device)
            for token, b in token_bias.items():
                self.bias[token] = b
        if compile:  # one specialisation per (row, column) bucket: allow that many recompiles
            buckets = (slots // self.row_bucket + 1) * (max_len // column_bucket + 1)
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, buckets)
        self._decode_fn: Callable = torch.compile(self._decode, dynamic=False) if compile else self._decode
        self._graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    # ---- forward passes -------------------------------------------------------------------
    def _decode(self, tokens: torch.Tensor, pos: torch.Tensor, limit: int) -> torch.Tensor:
        mask = (self._cols[:limit][None, :] <= pos[:, None])[:, None, None, :]
        self.cache.limit = limit
        hidden = self.decoder(input_ids=tokens[:, None], attention_mask=mask, position_ids=pos[:, None],
                              cache=self.cache, use_cache=True).last_hidden_state
        return self._pick(self.lm_head(hidden[:, 0]))

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits if self.bias is None else logits + self.bias).argmax(-1)

    def _decode_step(self, rows: int, limit: int) -> torch.Tensor:
        """Next token of the first `rows` slots (all slots' buffers hold the inputs)."""
        if not self.cuda_graphs:
            return self._decode_fn(self._tokens[:rows], self.cache.write_pos[:rows], limit)
        if (rows, limit) not in self._graphs:
            self._graphs[rows, limit] = self._capture(rows, limit)
        graph, out = self._graphs[rows, limit]
        graph.replay()
        return out

    def _capture(self, rows: int, limit: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """Record the decode step on the static token/position buffers (warm-up on a side stream first)."""
        saved = [(k.clone(), v.clone()) for k, v in zip(self.cache.keys, self.cache.values)]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._decode_fn(self._tokens[:rows], self.cache.write_pos[:rows], limit)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self._decode_fn(self._tokens[:rows], self.cache.write_pos[:rows], limit)
        for (k, v), keys, values in zip(saved, self.cache.keys, self.cache.values):  # undo warm-up writes
            keys.copy_(k)
            values.copy_(v)
        return graph, out

    @torch.inference_mode()
    def warmup(self) -> None:
        """Capture/compile every (row, column) bucket now, so the first requests do not pay for it."""
        if not (self.cuda_graphs or self.model.device.type == "cuda" or self._decode_fn is not self._decode):
            return  # eager CPU decoding has nothing to prepare
        for rows in sorted({min(self.slots, k) for k in range(self.row_bucket, self.slots + self.row_bucket,
                                                               self.row_bucket)}):
            for limit in range(self.column_bucket, self.max_len + 1, self.column_bucket):
                self._decode_step(rows, limit)
        if self.model.device.type == "cuda":
            torch.cuda.synchronize()

    def _capture_prefix(self, ids: list[int]) -> int:
        """Compute the shared prefix's keys/values (kept until a run has another prefix); returns the
        number of tokens computed (0 when the last run's prefix is reused)."""
        if ids == self._prefix_ids:
            return 0
        dev = self.model.device
        cols = self._cols[: len(ids)]
        self.cache.capturing_prefix = True
        try:
            self.decoder(input_ids=torch.tensor([ids], device=dev), cache=self.cache, use_cache=True,
                         attention_mask=(cols[None, :] <= cols[:, None])[None, None], position_ids=cols[None])
        finally:
            self.cache.capturing_prefix = False
        self._prefix_ids = list(ids)
        return len(ids)

    def _prefill(self, rows: list[list[int]], slots: list[int]) -> torch.Tensor:
        """Run new prompts' tails (right-padded, after the shared prefix) into their slots; returns each
        one's first new token."""
        dev, start = self.model.device, self.cache.prefix_len
        lens = torch.tensor([len(r) for r in rows], device=dev)
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long, device=dev)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, device=dev)
        cols = self._cols[:width]
        own = (cols[None, :] <= cols[:, None])[None] & (cols[None, None, :] < lens[:, None, None])
        mask = torch.cat([own.new_ones(len(rows), width, start), own], dim=2)  # every row sees the whole prefix
        self.cache.prefill_slots = torch.tensor(slots, device=dev)
        try:
            hidden = self.decoder(input_ids=ids, attention_mask=mask[:, None], cache=self.cache, use_cache=True,
                                  position_ids=(start + cols)[None].expand(len(rows), -1)).last_hidden_state
        finally:
            self.cache.prefill_slots = None
        last = hidden[torch.arange(len(rows), device=dev), lens - 1]
        return self._pick(self.lm_head(last))

    def _shared_prefix(self, prompts: list[list[int]]) -> int:
        """Length of the prompts' common prefix worth computing once (each prompt keeps >= 1 own token)."""
        if not self.share_prefix or not prompts:
            return 0
        if len(prompts) == 1:  # nothing to share inside the run, but the kept prefix still saves its tokens
            kept, p = self._prefix_ids, prompts[0]
            return len(kept) if kept and len(p) > len(kept) and p[: len(kept)] == kept else 0
        first, n = prompts[0], min(len(p) for p in prompts) - 1
        for p in prompts[1:]:
            n = next((i for i in range(n) if p[i] != first[i]), n)
        return n if n >= self.min_shared_prefix else 0

    # ---- scheduling -----------------------------------------------------------------------
    @torch.inference_mode()
    def run(self, prompts: Sequence[Sequence[int]], max_new_tokens: int | Sequence[int],
            on_finish: Callable[[int, list[int]], None] | None = None) -> tuple[list[list[int]], BatchStats]:
        """Generate greedily for every prompt; returns new tokens per prompt (EOS excluded) in input order.

        max_new_tokens may be one budget or one per prompt. on_finish(index, tokens) is called as
        each row completes, while the others are still decoding.
        """
        t0 = time.perf_counter()
        budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        room = self.max_len - max(budgets, default=0)
        if room < 1:
            raise ValueError(f"max_new_tokens {max(budgets)} leaves no room for a prompt in max_len {self.max_len}")
        # Keep the tail of an over-long prompt: a chat prompt ends with the assistant's turn.
        prompts = [list(p)[-room:] for p in prompts]
        shared = self._shared_prefix(prompts)
        stats = BatchStats(requests=len(prompts), shared_prefix=shared, prompt_tokens=sum(map(len, prompts)),
                           prefill_tokens=self._capture_prefix(prompts[0][:shared]) if shared else 0)
        self.cache.prefix_len = shared
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i])) if self.sort_by_length \
            else list(range(len(prompts)))
        queue = deque(order)
        live: list[_Row | None] = [None] * self.slots  # live rows are always live[:n]
        pos = [0] * self.slots
        results: list[list[int]] = [[] for _ in prompts]
        n = 0

        def accept(slot: int, token: int) -> None:
            row = live[slot]
            if token not in self.eos:
                row.tokens.append(token)
            if token in self.eos or len(row.tokens) >= row.budget:
                results[row.index] = row.tokens
                stats.new_tokens += len(row.tokens)
                live[slot] = None
                if on_finish:
                    on_finish(row.index, row.tokens)

        def pack(n: int) -> int:
            """Move the last live rows into the holes left by finished ones; returns the live count."""
            lo, hi = 0, n - 1
            while True:
                while lo < n and live[lo] is not None:
                    lo += 1
                while hi >= 0 and live[hi] is None:
                    hi -= 1
                if lo >= hi:
                    return hi + 1
                live[lo], live[hi], pos[lo], pos[hi] = live[hi], None, pos[hi], 0
                self.cache.move(hi, lo)
                self._tokens[lo] = self._tokens[hi]

        while queue or n:
            free = self.slots - n
            want = min(self.refill_min, len(queue))
            if queue and free and free >= want and (self.continuous or not n):
                take = [queue.popleft() for _ in range(min(free, len(queue)))]
                slots = list(range(n, n + len(take)))
                first = self._prefill([prompts[i][shared:] for i in take], slots).tolist()
                stats.prefill_calls += 1
                stats.prefill_tokens += sum(len(prompts[i]) - shared for i in take)
                for slot, i, tok in zip(slots, take, first):
                    live[slot] = _Row(i, budgets[i])
                    pos[slot] = len(prompts[i])
                    self._tokens[slot] = tok
                    accept(slot, tok)
                n = pack(n + len(take))
            if not n:
                continue
            rows = min(self.slots, -(-n // self.row_bucket) * self.row_bucket)
            self.cache.write_pos[:rows].copy_(torch.tensor(pos[:rows]))
            limit = min(self.max_len, -(-(max(pos[:n]) + 1) // self.column_bucket) * self.column_bucket)
            next_tokens = self._decode_step(rows, limit)
            self._tokens[:rows].copy_(next_tokens)
            host = next_tokens.tolist()
            stats.decode_steps += 1
            stats.slot_steps += self.slots
            stats.busy_slot_steps += n
            for s in range(n):
                pos[s] += 1
                accept(s, host[s])
            n = pack(n)
        stats.seconds = time.perf_counter() - t0
        return results, stats
