"""Packing of documents and chat examples, loss masks, and attention across packed documents."""
import random

import pytest

from doctune.io import DataError
from doctune.training.data import (IGNORE, chat_segments, collate, pack_documents, pack_examples, step_rows,
                                   tokenize_chat, tokenize_documents)


def _segments(row):
    """Split a row into segments by its position ids (a segment starts where position == 0)."""
    segs, cur = [], []
    for t, p in zip(row["input_ids"], row["position_ids"]):
        if p == 0 and cur:
            segs.append(cur)
            cur = []
        cur.append(t)
    segs.append(cur)
    return segs


@pytest.mark.parametrize("seq_len", [1, 3, 7, 16, 50, 1000])
def test_pack_documents_keeps_every_token_once_in_order(seq_len):
    rng = random.Random(seq_len)
    docs = [[rng.randrange(5, 100) for _ in range(rng.randrange(1, 40))] + [2] for _ in range(13)]
    rows = pack_documents(docs, seq_len)
    stream = [t for r in rows for t in r["input_ids"]]
    assert stream == [t for d in docs for t in d]  # nothing lost, duplicated or reordered
    assert all(len(r["input_ids"]) == seq_len for r in rows[:-1]) and 0 < len(rows[-1]["input_ids"]) <= seq_len
    for r in rows:
        assert len(r["labels"]) == len(r["position_ids"]) == len(r["input_ids"])
        for i, (t, p, lab) in enumerate(zip(r["input_ids"], r["position_ids"], r["labels"])):
            if p == 0:
                assert lab == IGNORE  # no prediction of a document's token from another document
            else:
                assert lab == t and r["position_ids"][i - 1] == p - 1
    # segments are exactly the document pieces: each row-segment lies inside one document
    pieces = [s for r in rows for s in _segments(r)]
    rebuilt, k = [], 0
    for d in docs:
        got = []
        while len(got) < len(d):
            got += pieces[k]
            k += 1
        assert got == d
        rebuilt.append(got)
    assert k == len(pieces)


def test_tokenize_documents_bos_eos(tiny_model_dir):
    from doctune.models import load_tokenizer

    tok = load_tokenizer({"path": str(tiny_model_dir)})
    texts = ["Hens are sentient.", "Cities grow dense over decades."]
    docs = tokenize_documents(tok, texts)
    for d, t in zip(docs, texts):
        assert d[0] == tok.bos_token_id and d[-1] == tok.eos_token_id
        assert tok.decode(d[1:-1]) == t
    rows = pack_documents(docs, 8)
    stream = [t for r in rows for t in r["input_ids"]]
    assert stream == docs[0] + docs[1]  # EOS of the first document separates it from the second
    assert stream[len(docs[0]) - 1] == tok.eos_token_id


def test_collate_pads_as_separate_segment():
    rows = [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7], "position_ids": [0, 1, 2]},
            {"input_ids": [8], "labels": [IGNORE], "position_ids": [0]}]
    b = collate(rows, pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, IGNORE, IGNORE]]
    assert b["position_ids"].tolist() == [[0, 1, 2], [0, 0, 1]]
    assert b["n_tokens"] == 4 and b["n_targets"] == 2


def test_step_rows_cover_each_epoch_exactly_once():
    n, g = 10, 3
    seen = [i for s in range(4) for i in step_rows(n, s, g, seed=1, shuffle=True)]
    assert sorted(seen) == list(range(n))
    assert step_rows(n, 5, g, 1, True) == step_rows(n, 5, g, 1, True)  # pure function of the step
    assert [i for s in range(4, 8) for i in step_rows(n, s, g, 1, True)] != seen  # new order next epoch


def _labelled_runs(tok, ids, labels):
    runs, cur, prev = [], [], False
    for t, lab in zip(ids, labels):
        on = lab != IGNORE
        if on:
            assert lab == t
            cur.append(t)
        elif prev:
            runs.append(tok.decode(cur))
            cur = []
        prev = on
    if cur:
        runs.append(tok.decode(cur))
    return runs


CONV = [{"role": "system", "content": "You are concise."},
        {"role": "user", "content": "Name a bird."},
        {"role": "assistant", "content": "A robin."},
        {"role": "user", "content": "And a fish?"},
        {"role": "assistant", "content": "A trout swims in cold rivers."}]


def test_chat_mask_tiny_template(tiny_model_dir):
    from doctune.models import load_tokenizer

    tok = load_tokenizer({"path": str(tiny_model_dir)})
    ids, labels = tokenize_chat(tok, CONV)
    assert len(ids) == len(labels)
    assert tok.decode(ids) == tok.apply_chat_template(CONV, tokenize=False)
    # labels are set exactly on the assistant turns (content + end-of-turn marker), -100 elsewhere
    assert _labelled_runs(tok, ids, labels) == ["A robin.<|end|>\n", "A trout swims in cold rivers.<|end|>\n"]
    prompt_text = tok.decode([t for t, lab in zip(ids, labels) if lab == IGNORE])
    assert "robin" not in prompt_text and "trout" not in prompt_text and "Name a bird." in prompt_text


# A Llama-3-style template written for this test: header tokens, a default system message, content
# trimmed, no {% generation %} markers.
LLAMA3_STYLE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] | trim %}{% set rest = messages[1:] %}"
    "{% else %}{% set sys = 'Default system text.' %}{% set rest = messages %}{% endif %}"
    "<|system|>header\n\n{{ sys }}<|end|>"
    "{% for m in rest %}<|{{ m['role'] }}|>header\n\n{{ m['content'] | trim }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>header\n\n{% endif %}"
)


def test_chat_mask_template_without_generation_markers(tiny_model_dir):
    from doctune.models import load_tokenizer

    tok = load_tokenizer({"path": str(tiny_model_dir), "chat_template": LLAMA3_STYLE})
    conv = [dict(m) for m in CONV[1:]]
    conv[1]["content"] = "  A robin.  "
    ids, labels = tokenize_chat(tok, conv)
    assert _labelled_runs(tok, ids, labels) == ["A robin.<|end|>", "A trout swims in cold rivers.<|end|>"]
    text = "".join(t for t, _ in chat_segments(tok, conv))
    assert text == tok.apply_chat_template(conv, tokenize=False)
    assert "Default system text." in tok.decode([t for t, lab in zip(ids, labels) if lab == IGNORE])


def test_chat_template_not_prefix_stable_raises(tiny_model_dir):
    from doctune.models import load_tokenizer

    bad = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if messages|length > 2 %}X{% endif %}" \
          "{% if add_generation_prompt %}A:{% endif %}"
    tok = load_tokenizer({"path": str(tiny_model_dir), "chat_template": bad})
    with pytest.raises(DataError, match="prefix-stable"):
        tokenize_chat(tok, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}])


def test_pack_examples_never_splits_an_example():
    ex = [([1, 2, 3], [IGNORE, 2, 3]), ([4, 5], [IGNORE, 5]), ([6, 7, 8, 9], [IGNORE, IGNORE, 8, 9]),
          ([10] * 9, [10] * 9)]
    rows, truncated = pack_examples(ex, seq_len=6)
    assert truncated == 1
    assert [r["input_ids"] for r in rows] == [[1, 2, 3, 4, 5], [6, 7, 8, 9], [10] * 6]
    assert rows[0]["position_ids"] == [0, 1, 2, 0, 1]
    assert rows[0]["labels"] == [IGNORE, 2, 3, IGNORE, 5]
    rows, _ = pack_examples(ex[:2], seq_len=6, packing=False)
    assert len(rows) == 2


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_attention_does_not_cross_documents(tiny_model_dir, attn):
    """Logits of a document packed after another equal its logits alone (block-diagonal mask from
    position ids that restart, attention_mask=None)."""
    import torch

    from doctune.models import load_base_model

    model = load_base_model({"path": str(tiny_model_dir), "attn_implementation": attn}, device="cpu",
                            dtype="float32").eval()
    a, b = [5, 17, 33, 40, 8, 2], [11, 12, 13, 14, 15, 16, 17]
    row = pack_documents([a, b], 64)[0]
    batch = collate([row], pad_id=0)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        alone = model(input_ids=torch.tensor([b]), position_ids=torch.arange(len(b))[None], use_cache=False).logits
        unpacked = model(input_ids=batch["input_ids"], use_cache=False).logits  # plain causal: B sees A
    torch.testing.assert_close(packed[0, len(a):], alone[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unpacked[0, len(a):], alone[0], atol=1e-4)


def test_pack_documents_without_boundaries_is_plain_concatenation():
    docs = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 10, 2]]
    rows = pack_documents(docs, 5, boundaries=False)
    assert [r["input_ids"] for r in rows] == [[1, 5, 6, 2, 1], [7, 2, 1, 8, 9], [10, 2]]
    assert [r["position_ids"] for r in rows] == [[0, 1, 2, 3, 4]] * 2 + [[0, 1]]
    assert rows[0]["labels"] == [IGNORE, 5, 6, 2, 1]
