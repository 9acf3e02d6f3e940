"""A local transformers model as a `Backend`: batched generation and exact option scoring.

Generation
----------
* Prompts are rendered with the model's chat template (``add_generation_prompt=True``) and the
  resulting text is tokenised with ``add_special_tokens=False`` (the template already holds any BOS
  token). ``GenRequest.raw_prompt=True`` skips the template: ``messages[0]["content"]`` is tokenised
  as plain text with the tokenizer's own special tokens.
* Requests are grouped by identical sampling settings (max_new_tokens, temperature, top_p), sorted
  by prompt length inside a group and cut into batches of ``batch_size`` with left padding, so
  little compute goes to padding. Results come back in request order.
* Generation stops on every end-of-sequence id of the model (generation config + tokenizer).
  ``finish_reason`` is "stop" when one was produced, "length" when ``max_new_tokens`` ran out.
* **Seed rule.** temperature == 0 is greedy. Otherwise sampling does not use torch's global RNG:
  each row draws one uniform number (53 bits) from a counter-based hash of (request seed, decoding
  step) and takes the token where it falls in the cumulative distribution of softmax(logits / T)
  over the top-p nucleus (inverse-CDF sampling, float64 cumulative sums), which is an exact sample
  from the top-p-truncated softmax. A request's random stream therefore depends only on its own
  ``seed`` (``None`` counts as 0), never on which other requests share its batch, the batch size,
  the order or the device; the same request with the same seed gives the same text up to the
  floating-point differences that padding and batch shape cause in the logits.
* ``batch_size`` is the most rows per generate call; a group of n requests is cut into
  ceil(n / batch_size) batches of equal size (780 requests at 256 make 4 batches of 195, not three
  of 256 and one of 12 that would take as many decoding steps as a full one).
  ``batch_size: "auto"`` sizes the batch from the GPU memory free after the model is loaded: the
  KV cache of prompt + max_new_tokens per row, the transient prefill activations and the
  sampler's (rows x vocabulary) temporaries (``plan_batch_size``); on a CPU it means
  ``AUTO_CPU_BATCH``.
* A CUDA out-of-memory error halves the batch and retries, down to one request.

Scoring
-------
``option_logprobs(requests, options)`` returns, for every request, the total log-probability of
each option string as the continuation of the request's prompt (chat template with the generation
prompt appended, or the raw prompt). The option is tokenised on its own with
``add_special_tokens=False`` and appended to the prompt tokens, so the number is the model's exact
probability of that token sequence. Sequences are batched with right padding (positions start at
0 in every row, as in a one-at-a-time forward pass). When every option of a request is a single
token (a judge's "0"/"1"), the prompt is run once and all options are read from its last position.
The vocabulary projection is computed only at the positions that are scored (``logits_to_keep``).
``option_loglik`` returns each total with the number of option tokens it sums over.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Sequence

from ..io import stable_hash
from .base import FINISH_LENGTH, FINISH_STOP, GenRequest, GenResult, ProgressFn

log = logging.getLogger(__name__)

_MASK32 = 0xFFFFFFFF


def _mix32(x):
    """A 32-bit integer hash (lowbias32) on int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    x = x ^ (x >> 16)
    return x


def _seed_word(seed: int | None) -> int:
    s = int(seed or 0) & ((1 << 64) - 1)
    return ((s & _MASK32) ^ ((s >> 32) * 0x9E3779B1)) & _MASK32


class SeededSampler:
    """Logits processor that samples each row from its own counter-based random stream.

    It returns scores that are -inf everywhere except at the sampled token, so a greedy
    ``generate`` call (``do_sample=False``) emits exactly the sampled tokens. Per step it makes a
    handful of passes over the (rows x vocabulary) logits (softmax, a float64 cumulative sum, a
    binary search per row), with one random number per row; top_p < 1 adds a sort."""

    def __init__(self, seeds: Sequence[int | None], prompt_len: int, temperature: float, top_p: float):
        self.seeds = [_seed_word(s) for s in seeds]
        self.prompt_len = prompt_len
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self._row_hash = None

    def uniforms(self, step: int, device) -> Any:
        """One number in (0, 1) per row for this decoding step: 53 bits from two hash words."""
        import torch

        if self._row_hash is None or self._row_hash.device != device:
            self._row_hash = _mix32(torch.tensor(self.seeds, dtype=torch.int64, device=device))
        step_word = (step * 0x85EBCA77 + 0x27D4EB2F) & _MASK32
        hi = _mix32(self._row_hash ^ _mix32(torch.tensor(step_word, dtype=torch.int64, device=device)))
        lo = _mix32(hi ^ 0x632BE5AB)
        return ((hi >> 6).to(torch.float64) * float(1 << 27) + (lo >> 5).to(torch.float64) + 0.5) / float(1 << 53)

    def __call__(self, input_ids, scores):
        import torch

        step = input_ids.shape[1] - self.prompt_len
        logits = scores.float() / self.temperature
        order = None
        if self.top_p < 1.0:
            # the nucleus in descending order (stable, so ties break by token id in any batch shape):
            # the smallest prefix whose probability reaches top_p, the first token always kept
            logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
            probs = torch.softmax(logits, dim=-1)
            probs = probs.masked_fill((probs.cumsum(dim=-1) - probs) >= self.top_p, 0.0)
        else:
            probs = torch.softmax(logits, dim=-1)
        cdf = probs.to(torch.float64).cumsum(dim=-1)
        # u > 0, so the chosen token always has probability > 0 (never one outside the nucleus)
        u = self.uniforms(step, logits.device) * cdf[:, -1]
        choice = torch.searchsorted(cdf, u[:, None]).clamp_(max=logits.shape[-1] - 1)
        if order is not None:
            choice = order.gather(-1, choice)
        choice = choice.squeeze(-1)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, choice[:, None], 0.0)
        return out


AUTO_CPU_BATCH = 16
AUTO_MAX_BATCH = 1024
AUTO_MEMORY_FRACTION = 0.9       # of the free GPU memory, for the batch's own tensors
AUTO_RESERVE_BYTES = 3 << 29     # 1.5 GiB kept back for the allocator, CUDA graphs and compile
SAMPLER_BYTES_PER_LOGIT = 32     # float32 scores, logits and probabilities, the float64 CDF, output


def _text_config(config):
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """Bytes of KV cache one token takes: keys and values of every layer's KV heads."""
    c = _text_config(config)
    heads = int(getattr(c, "num_attention_heads"))
    kv_heads = int(getattr(c, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // heads)
    return 2 * int(c.num_hidden_layers) * kv_heads * head_dim * int(dtype_bytes)


def plan_batch_size(config, dtype_bytes: int, prompt_len: int, max_new_tokens: int, free_bytes: int,
                    fraction: float = AUTO_MEMORY_FRACTION, reserve_bytes: int = AUTO_RESERVE_BYTES,
                    cap: int = AUTO_MAX_BATCH) -> int:
    """Rows per generate call that fit in `free_bytes` (the memory free with the model loaded).

    Per row: the KV cache at its full length (prompt_len + max_new_tokens), the prefill's transient
    activations (the MLP's gate/up/product and a few hidden-size buffers per prompt token, plus
    attention scores per head), and the sampler's float/int64 temporaries over the vocabulary."""
    c = _text_config(config)
    hidden = int(c.hidden_size)
    inter = int(getattr(c, "intermediate_size", None) or 4 * hidden)
    heads = int(c.num_attention_heads)
    vocab = int(c.vocab_size)
    kv = kv_bytes_per_token(c, dtype_bytes) * (prompt_len + max_new_tokens)
    prefill = prompt_len * (int(dtype_bytes) * (3 * inter + 4 * hidden) + 4 * heads * prompt_len)
    per_row = kv + prefill + SAMPLER_BYTES_PER_LOGIT * vocab
    budget = free_bytes * fraction - reserve_bytes
    return int(max(1, min(cap, budget // per_row)))


def balanced_batches(idx: Sequence[int], max_batch: int) -> list[list[int]]:
    """Cut `idx` (in order) into the fewest batches of at most `max_batch`, as equal as can be."""
    idx = list(idx)
    if not idx:
        return []
    n_batches = math.ceil(len(idx) / max(1, int(max_batch)))
    size, extra = divmod(len(idx), n_batches)
    out, start = [], 0
    for b in range(n_batches):
        end = start + size + (1 if b < extra else 0)
        out.append(idx[start:end])
        start = end
    return out


def _at_least_fp32(x):
    """Half-precision logits in float32 for the log-softmax; float32 and float64 as they are."""
    import torch

    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _eos_ids(model, tok) -> list[int]:
    ids: list[int] = []
    gc = getattr(model, "generation_config", None)
    for src in (getattr(gc, "eos_token_id", None), getattr(model.config, "eos_token_id", None), tok.eos_token_id):
        if src is None:
            continue
        for i in (src if isinstance(src, (list, tuple)) else [src]):
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    return ids


def _is_oom(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except Exception:  # pragma: no cover
        pass
    return "out of memory" in str(exc).lower()


class HFBackend:
    """Backend over a local transformers model (optionally with peft adapters).

    ``sampler`` names the sampling rule (stored with each completion, so a cache filled under an
    earlier rule stays identifiable).

    cfg: {"backend": "hf", "spec": <model spec>, "batch_size": 16, "score_batch_size": batch_size,
    "device": auto, "dtype": spec's, "cache_implementation": None|"static", "compile": None|bool,
    "ignore_eos": False, "repetition_penalty": 1.0 (off), "max_new_tokens"/"temperature"/"top_p": defaults for callers}.
    ``model``/``tokenizer`` may be passed in to reuse an already loaded pair."""

    sampler = "doctune-inverse-cdf-1"

    def __init__(self, cfg: dict, model=None, tokenizer=None, **_: Any):
        if "spec" not in cfg and model is None:
            raise ValueError("hf backend config needs 'spec' (a model spec; see doctune.models)")
        self.cfg = dict(cfg)
        self.spec = cfg.get("spec") or {"name": "model"}
        bs = 16 if cfg.get("batch_size") is None else cfg["batch_size"]
        if bs != "auto" and (isinstance(bs, bool) or not isinstance(bs, int) or bs < 1):
            raise ValueError(f"hf backend: batch_size must be a positive integer or 'auto', got {bs!r}")
        self.batch_size = bs
        sbs = cfg.get("score_batch_size") or (bs if bs != "auto" else AUTO_CPU_BATCH)
        self.score_batch_size = int(sbs)
        self.cache_implementation = cfg.get("cache_implementation")
        self.compile = cfg.get("compile")
        self.ignore_eos = bool(cfg.get("ignore_eos", False))
        rp = cfg.get("repetition_penalty")
        self.repetition_penalty = 1.0 if rp is None else float(rp)
        if not self.repetition_penalty > 0:
            raise ValueError(f"hf backend: repetition_penalty must be > 0, got {rp!r}")
        if model is None:
            from ..models import load_model

            model, tokenizer = load_model(self.spec, device=cfg.get("device"), dtype=cfg.get("dtype"))
        if tokenizer is None:
            raise ValueError("hf backend: a model was passed without its tokenizer")
        self.model = model
        self.tok = tokenizer
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.eos_ids = _eos_ids(model, tokenizer)
        self.model_id = f"hf:{self.spec.get('name', 'model')}:{stable_hash(self.spec)}"
        if self.repetition_penalty != 1.0:  # other replies than without it: cached apart
            self.model_id += f":rp{self.repetition_penalty:g}"
        self.name = str(self.spec.get("name", "model"))

    @property
    def device(self):
        return next(self.model.parameters()).device

    # ---------------------------------------------------------------- prompts
    def prompt_ids(self, req: GenRequest) -> list[int]:
        if not req.messages:
            raise ValueError(f"request {req.key!r} has no messages")
        if req.raw_prompt:
            return list(self.tok(req.messages[0]["content"], add_special_tokens=True)["input_ids"])
        if not getattr(self.tok, "chat_template", None):
            raise ValueError(f"model {self.name!r}: tokenizer has no chat template; set base_models.<name>."
                             "chat_template or use raw prompts")
        text = self.tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    # ---------------------------------------------------------------- generation
    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None,
                 on_result: Callable[[GenResult], None] | None = None) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        ids = [self.prompt_ids(r) for r in requests]
        for i, r in enumerate(requests):
            groups.setdefault((int(r.max_new_tokens), float(r.temperature), float(r.top_p)), []).append(i)
        for (mnt, temp, top_p), idx in groups.items():
            idx = sorted(idx, key=lambda i: (len(ids[i]), i))
            max_batch = self.max_batch(max(len(ids[i]) for i in idx), mnt)
            for chunk in balanced_batches(idx, max_batch):
                for i, res in self._generate_chunk(chunk, requests, ids, mnt, temp, top_p):
                    results[i] = res
                    if on_result is not None:
                        on_result(res)
                if progress is not None:
                    progress(len(chunk))
        return [r for r in results if r is not None]

    def max_batch(self, prompt_len: int, max_new_tokens: int) -> int:
        """Rows per generate call: the configured batch_size, or the memory plan for 'auto'."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        import torch

        dev = self.device
        if dev.type != "cuda":
            return AUTO_CPU_BATCH
        free, _ = torch.cuda.mem_get_info(dev)
        dtype_bytes = next(self.model.parameters()).element_size()
        bs = plan_batch_size(self.model.config, dtype_bytes, prompt_len, max_new_tokens, free)
        log.info("batch_size auto: %d rows (%.1f GiB free, prompts up to %d tokens + %d new)", bs, free / 2**30,
                 prompt_len, max_new_tokens)
        return bs

    def _generate_chunk(self, chunk, requests, ids, mnt, temp, top_p):
        try:
            return self._generate_batch(chunk, requests, ids, mnt, temp, top_p)
        except Exception as exc:  # noqa: BLE001 - only OOM is handled
            if not _is_oom(exc) or len(chunk) == 1:
                raise
            import torch

            torch.cuda.empty_cache()
            half = len(chunk) // 2
            log.warning("out of memory at batch %d; retrying as %d + %d", len(chunk), half, len(chunk) - half)
            return (self._generate_chunk(chunk[:half], requests, ids, mnt, temp, top_p)
                    + self._generate_chunk(chunk[half:], requests, ids, mnt, temp, top_p))

    def _left_pad(self, seqs: list[list[int]]):
        import torch

        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            if s:
                input_ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
                mask[row, width - len(s):] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def _generate_batch(self, chunk, requests, ids, mnt, temp, top_p):
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        input_ids, mask = self._left_pad([ids[i] for i in chunk])
        gkw: dict[str, Any] = dict(
            max_new_tokens=mnt, do_sample=False, eos_token_id=self.eos_ids or None,
            pad_token_id=self.tok.pad_token_id, num_beams=1,
        )
        if self.ignore_eos:
            gkw["min_new_tokens"] = mnt
        if self.repetition_penalty != 1.0:
            gkw["repetition_penalty"] = self.repetition_penalty
        if self.cache_implementation:
            gkw["cache_implementation"] = self.cache_implementation
        if self.compile is False:
            gkw["disable_compile"] = True
        elif self.compile:
            from transformers import CompileConfig

            gkw["compile_config"] = CompileConfig()
        processors = LogitsProcessorList()
        if temp > 0:
            processors.append(SeededSampler([requests[i].seed for i in chunk], input_ids.shape[1], temp, top_p))
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask,
                                      generation_config=GenerationConfig(**gkw), logits_processor=processors)
        new = out[:, input_ids.shape[1]:].tolist()
        eos = set(self.eos_ids)
        results = []
        for row, i in enumerate(chunk):
            toks = new[row]
            stop_at = next((k for k, t in enumerate(toks) if t in eos), None)
            if stop_at is None or self.ignore_eos:
                body, n_out, reason = toks, len(toks), FINISH_LENGTH
                # a row can end by padding only after an eos; without one it ran to the limit
            else:
                body, n_out, reason = toks[:stop_at], stop_at + 1, FINISH_STOP
            text = self.tok.decode(body, skip_special_tokens=True)
            results.append((i, GenResult(key=requests[i].key, text=text, finish_reason=reason,
                                         input_tokens=len(ids[i]), output_tokens=n_out, model=self.name)))
        return results

    # ---------------------------------------------------------------- scoring
    def option_logprobs(self, requests: Sequence[GenRequest], options: Sequence[Sequence[str]]) -> list[list[float]]:
        """Total log-probability of each option as the continuation of each request's prompt."""
        return [[lp for lp, _ in row] for row in self.option_loglik(requests, options)]

    def option_loglik(self, requests: Sequence[GenRequest],
                      options: Sequence[Sequence[str]]) -> list[list[tuple[float, int]]]:
        """(total log-probability, number of tokens) of each option as the continuation of each
        request's prompt: the sum, and the count it is a sum over (per-token means divide them)."""
        import torch

        if len(options) != len(requests):
            raise ValueError(f"option_logprobs: {len(requests)} requests but {len(options)} option lists")
        # one sequence per (request, option): prompt + option tokens, scored from the continuation start;
        # when every option of a request is one token, one sequence (the prompt) scores them all from
        # its last position - the same numbers for half the work of a binary label judge
        seqs: list[tuple[list[tuple[int, int]], list[int], list[list[int]]]] = []  # (targets, ids, option tokens)
        for r, (req, opts) in enumerate(zip(requests, options)):
            p = self.prompt_ids(req)
            if not p:
                raise ValueError(f"request {req.key!r}: empty prompt cannot be scored")
            toks = []
            for text in opts:
                c = list(self.tok(text, add_special_tokens=False)["input_ids"])
                if not c:
                    raise ValueError(f"request {req.key!r}: option {text!r} tokenises to nothing")
                toks.append(c)
            if toks and all(len(c) == 1 for c in toks):
                seqs.append(([(r, o) for o in range(len(toks))], p, toks))
            else:
                seqs += [([(r, o)], p + c, [c]) for o, c in enumerate(toks)]
        out = [[math.nan] * len(opts) for opts in options]
        counts = [[0] * len(opts) for opts in options]
        for targets, _, cs in seqs:
            for (r, o), c in zip(targets, cs):
                counts[r][o] = len(c)
        order = sorted(range(len(seqs)), key=lambda k: len(seqs[k][1]))
        starts = range(0, len(order), self.score_batch_size)
        if len(starts) > 1:
            import sys

            from tqdm import tqdm

            starts = tqdm(starts, desc=f"scoring options ({self.name})", unit="batch", file=sys.stderr)
        for start in starts:
            batch = [seqs[k] for k in order[start:start + self.score_batch_size]]
            width = max(len(s[1]) for s in batch)
            input_ids = torch.full((len(batch), width), self.tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (_, s, _) in enumerate(batch):
                input_ids[row, :len(s)] = torch.tensor(s, dtype=torch.long)
                mask[row, :len(s)] = 1
            # positions whose next-token distribution is needed (the vocabulary projection is computed
            # only there: for a long judge prompt it is most of the logits' size)
            need: set[int] = set()
            for targets, s, cs in batch:
                if len(targets) > 1:
                    need.add(len(s) - 1)
                else:
                    need.update(range(len(s) - len(cs[0]) - 1, len(s) - 1))
            need = sorted(need)
            logits, col = self._logits_at(input_ids, mask, need)
            for row, (targets, s, cs) in enumerate(batch):
                if len(targets) > 1:   # single-token options: all read from the prompt's last position
                    lp = torch.log_softmax(_at_least_fp32(logits[row, col[len(s) - 1]]), dim=-1)
                    for (r, o), c in zip(targets, cs):
                        out[r][o] = float(lp[c[0]])
                    continue
                (r, o), c = targets[0], cs[0]
                cstart = len(s) - len(c)
                idx = torch.tensor([col[i] for i in range(cstart - 1, len(s) - 1)], device=logits.device)
                lp = torch.log_softmax(_at_least_fp32(logits[row].index_select(0, idx)), dim=-1)
                tgt = torch.tensor(c, dtype=torch.long, device=lp.device)
                out[r][o] = float(lp.gather(-1, tgt[:, None]).sum())
        return [list(zip(lps, ns)) for lps, ns in zip(out, counts)]

    def _logits_at(self, input_ids, mask, positions: list[int]):
        """Logits at the given sequence positions only (models that take ``logits_to_keep`` as a
        tensor of positions), else at every position; returns (logits, {position: column})."""
        import torch

        ids, am = input_ids.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            if positions and len(positions) < input_ids.shape[1]:
                try:
                    keep = torch.tensor(positions, dtype=torch.long, device=self.device)
                    logits = self.model(input_ids=ids, attention_mask=am, logits_to_keep=keep).logits
                    if logits.shape[1] == len(positions):
                        return logits, {p: k for k, p in enumerate(positions)}
                except TypeError:   # a model without logits_to_keep
                    pass
            logits = self.model(input_ids=ids, attention_mask=am).logits
        return logits, {p: p for p in range(logits.shape[1])}

    def close(self) -> None:
        self.model = None
