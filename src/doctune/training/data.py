"""Training data: tokenisation, packing and batching.

Documents (method "doc") are tokenised as [BOS] + text + [EOS] and streamed into rows of exactly
`seq_len` tokens (the last row may be shorter); a document may continue into the next row, so no
token is lost or duplicated. Chat examples (method "sft") are tokenised with the model's chat
template and the loss mask covers only assistant turns; several examples may share a row but an
example never straddles two rows.

Every row carries position ids that restart at 0 for each document/example segment and at the
start of the row, and label -100 on the first token of each segment. With attention_mask=None
and no cache, transformers (>= 4.5x, checked on 5.24: masking_utils.find_packed_sequence_indices)
turns position ids that restart into a block-diagonal causal mask for sdpa/eager/flex, and the
flash-attention path reads the same restarts as cu_seqlens when the batch is flattened to one row,
so attention never crosses a document boundary.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable

from ..io import DataError, iter_jsonl

IGNORE = -100


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------

def read_documents(paths: Iterable[str], ids: list | None = None) -> list[str]:
    """The documents' texts, in file order; their ids (record ``id``, else FILE:LINE) are appended to
    ``ids`` when given (the training report names the documents an arm saw)."""
    texts: list[str] = []
    for path in paths:
        for i, rec in enumerate(iter_jsonl(path), start=1):
            text = rec.get("text")
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{path}: record {i} (id {rec.get('id')!r}): missing or empty 'text'")
            texts.append(text)
            if ids is not None:
                ids.append(str(rec["id"]) if rec.get("id") is not None else f"{Path(path).name}:{i}")
    if not texts:
        raise DataError(f"no documents in {list(paths)}")
    return texts


def validate_messages(messages: Any, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list")
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: messages[{j}] must be an object with string 'role' and 'content'")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: no assistant message to train on")
    return messages


def read_chats(paths: Iterable[str], allow_text: bool = False) -> list:
    """Chat examples (lists of messages). With allow_text, a record holding "text" instead of
    "messages" (a replayed document) is returned as its string and trained with full LM loss."""
    chats: list = []
    for path in paths:
        for i, rec in enumerate(iter_jsonl(path), start=1):
            if allow_text and "messages" not in rec and isinstance(rec.get("text"), str):
                chats.append(rec["text"])
                continue
            chats.append(validate_messages(rec.get("messages"), f"{path}: record {i} (id {rec.get('id')!r})"))
    if not chats:
        raise DataError(f"no chat examples in {list(paths)}")
    return chats


# ------------------------------------------------------------------------------------------------
# tokenisation
# ------------------------------------------------------------------------------------------------

def tokenize_documents(tok, texts: list[str], add_bos: bool = True) -> list[list[int]]:
    if tok.eos_token_id is None:
        raise DataError("the tokenizer has no EOS token to separate documents")
    bos = [tok.bos_token_id] if add_bos and tok.bos_token_id is not None else []
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    return [bos + list(x) + [tok.eos_token_id] for x in ids]


def _render(tok, messages: list[dict], add_generation_prompt: bool) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def chat_segments(tok, messages: list[dict]) -> list[tuple[str, bool]]:
    """Split the rendered conversation into (text, is_assistant) segments by rendering prefixes.

    For each assistant message j, the text up to render(messages[:j], add_generation_prompt=True)
    is prompt and the text from there to render(messages[:j+1]) is the assistant's turn (content
    and end-of-turn marker). Works for templates without {% generation %} markers (e.g. Llama
    3.1's); raises DataError when a template is not prefix-stable."""
    segments: list[tuple[str, bool]] = []
    done = ""
    for j, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = _render(tok, messages[:j], True) if j else ""
        turn = _render(tok, messages[: j + 1], False)
        if not prompt.startswith(done) or not turn.startswith(prompt):
            raise DataError("the chat template is not prefix-stable (rendering a conversation prefix does not "
                            "yield a prefix of the longer conversation), so assistant tokens cannot be located")
        if len(prompt) > len(done):
            segments.append((prompt[len(done):], False))
        segments.append((turn[len(prompt):], True))
        done = turn
    full = _render(tok, messages, False)
    if not full.startswith(done):
        raise DataError("the chat template is not prefix-stable")
    if len(full) > len(done):
        segments.append((full[len(done):], False))
    return segments


def tokenize_chat(tok, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) with labels == -100 on every non-assistant token."""
    ids: list[int] = []
    labels: list[int] = []
    for text, is_assistant in chat_segments(tok, messages):
        seg = tok(text, add_special_tokens=False)["input_ids"]
        ids.extend(seg)
        labels.extend(seg if is_assistant else [IGNORE] * len(seg))
    return ids, labels


# ------------------------------------------------------------------------------------------------
# packing
# ------------------------------------------------------------------------------------------------

def pack_documents(docs: list[list[int]], seq_len: int, boundaries: bool = True) -> list[dict]:
    """Stream tokenised documents into rows of seq_len tokens (last row may be shorter).

    boundaries=False: plain concatenation (positions run through the row, every token but the
    row's first is a target), i.e. attention across documents as in classic packing."""
    rows: list[dict] = []
    ids: list[int] = []
    pos: list[int] = []
    lab: list[int] = []
    for doc in docs:
        i = 0
        while i < len(doc):
            take = min(seq_len - len(ids), len(doc) - i)
            chunk = doc[i:i + take]
            if boundaries or not ids:
                pos.extend(range(take))
                lab.extend([IGNORE] + chunk[1:])
            else:
                pos.extend(range(len(ids), len(ids) + take))
                lab.extend(chunk)
            ids.extend(chunk)
            i += take
            if len(ids) == seq_len:
                rows.append({"input_ids": ids, "labels": lab, "position_ids": pos})
                ids, pos, lab = [], [], []
    if ids:
        rows.append({"input_ids": ids, "labels": lab, "position_ids": pos})
    return rows


def pack_examples(examples: list[tuple[list[int], list[int]]], seq_len: int, packing: bool = True,
                  boundaries: bool = True) -> tuple[list[dict], int]:
    """Rows of whole examples (truncated to seq_len), in order. Returns (rows, n_truncated)."""
    rows: list[dict] = []
    cur: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    truncated = 0
    for ids, labels in examples:
        if len(ids) > seq_len:
            truncated += 1
            ids, labels = ids[:seq_len], labels[:seq_len]
        if cur["input_ids"] and (not packing or len(cur["input_ids"]) + len(ids) > seq_len):
            rows.append(cur)
            cur = {"input_ids": [], "labels": [], "position_ids": []}
        start = 0 if boundaries else len(cur["input_ids"])
        cur["input_ids"].extend(ids)
        cur["labels"].extend([IGNORE] + list(labels[1:]))
        cur["position_ids"].extend(range(start, start + len(ids)))
    if cur["input_ids"]:
        rows.append(cur)
    return rows, truncated


def count_targets(row: dict) -> int:
    return sum(1 for x in row["labels"][1:] if x != IGNORE)


def collate(rows: list[dict], pad_id: int, pad_to: int | None = None) -> dict:
    """Right-pad rows into tensors. Padding forms its own segment (positions from 0, labels -100)."""
    import torch

    length = max(len(r["input_ids"]) for r in rows)
    if pad_to:
        length = max(length, pad_to)
    ids, labels, pos = [], [], []
    n_real = 0
    for r in rows:
        n = len(r["input_ids"])
        k = length - n
        n_real += n
        ids.append(r["input_ids"] + [pad_id] * k)
        labels.append(r["labels"] + [IGNORE] * k)
        pos.append(r["position_ids"] + list(range(k)))
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "position_ids": torch.tensor(pos, dtype=torch.long),
        "n_tokens": n_real,
        "n_targets": sum(count_targets(r) for r in rows),
    }


# ------------------------------------------------------------------------------------------------
# order
# ------------------------------------------------------------------------------------------------

def epoch_order(n_rows: int, epoch: int, seed: int, shuffle: bool) -> list[int]:
    """The row order of one epoch: a pure function of (n_rows, epoch, seed), so resuming at any
    step reproduces the same data order."""
    order = list(range(n_rows))
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def step_rows(n_rows: int, step: int, global_batch: int, seed: int, shuffle: bool) -> list[int]:
    """Row indices of optimizer step `step` (0-based); epochs cycle when steps run past the data."""
    steps_per_epoch = -(-n_rows // global_batch)
    epoch, k = divmod(step, steps_per_epoch)
    return epoch_order(n_rows, epoch, seed, shuffle)[k * global_batch:(k + 1) * global_batch]


def build_rows(method: str, data: list[str], tok, cfg: dict) -> tuple[list[dict], dict]:
    """Tokenise and pack the training data; returns (rows, stats)."""
    if method == "doc":
        ids: list[str] = []
        texts = read_documents(data, ids)
        docs = tokenize_documents(tok, texts, add_bos=cfg["add_bos"])
        rows = pack_documents(docs, cfg["seq_len"], boundaries=cfg["packing_boundaries"])
        stats = {"n_examples": len(texts), "n_tokens": sum(len(d) for d in docs), "n_truncated": 0,
                 "document_ids": ids}
    elif method == "sft":
        if not getattr(tok, "chat_template", None):
            raise DataError("method 'sft' needs a tokenizer with a chat template (set base.chat_template)")
        chats = read_chats(data, allow_text=True)
        examples = []
        for m in chats:
            if isinstance(m, str):  # replayed document: every token is a target
                ids = tokenize_documents(tok, [m], add_bos=cfg["add_bos"])[0]
                examples.append((ids, list(ids)))
            else:
                examples.append(tokenize_chat(tok, m))
        rows, truncated = pack_examples(examples, cfg["seq_len"], packing=cfg["packing"],
                                        boundaries=cfg["packing_boundaries"])
        stats = {"n_examples": len(chats), "n_tokens": sum(len(e[0]) for e in examples), "n_truncated": truncated}
    else:
        raise ValueError(f"unknown training method {method!r} (expected 'doc' or 'sft')")
    stats["n_rows"] = len(rows)
    stats["n_targets"] = sum(count_targets(r) for r in rows)
    if stats["n_targets"] == 0:
        raise DataError(f"no tokens to train on in {', '.join(str(Path(p)) for p in data)}")
    return rows, stats
