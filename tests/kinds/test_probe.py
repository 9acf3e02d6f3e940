"""The judge-free preference-probe kind (doctune.evaluation.kinds.probe): loading and checking items,
scoring by answer log-likelihood, metrics, the shipped probe sets and the guards against writing
items the training corpora contain."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from doctune.evaluation.kinds import get_kind
from doctune.evaluation.kinds.probe import score_items
from doctune.evaluation.kinds.probe.items import load_items, read_file
from doctune.io import DataError

REPO = Path(__file__).resolve().parents[2]
PROBES = REPO / "resources" / "probes"
KIND = get_kind("probe")


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ITEMS = [{"id": "a", "prompt": "p1", "preferred": "good one", "dispreferred": "bad one"},
         {"id": "b", "prompt": "p2", "preferred": "good two", "dispreferred": ["bad two", "worse two"], "domain": "x"}]


def test_jsonl_csv_and_json_give_the_same_items(tmp_path):
    j = load_items({"source": {"path": str(_write(tmp_path / "p.jsonl", ITEMS))}})
    (tmp_path / "p.csv").write_text('id,prompt,preferred,dispreferred,dispreferred_2\n'
                                    'a,p1,good one,bad one,\n'
                                    'b,p2,good two,bad two,worse two\n')
    c = load_items({"source": {"path": str(tmp_path / "p.csv")}})
    (tmp_path / "p.json").write_text(json.dumps(ITEMS))
    js = load_items({"source": {"path": str(tmp_path / "p.json")}})
    strip = [{k: it[k] for k in ("id", "prompt", "preferred", "dispreferred")} for it in j]
    for other in (c, js):
        assert [{k: it[k] for k in ("id", "prompt", "preferred", "dispreferred")} for it in other] == strip
    assert j[1]["dispreferred"] == ["bad two", "worse two"] and j[1]["meta"] == {"domain": "x"}
    assert load_items({"source": {"path": str(tmp_path / "p.jsonl")}, "max_items": 1})[0]["id"] == "a"


@pytest.mark.parametrize("bad,message", [
    ({"id": "c", "prompt": "p", "preferred": "x"}, "'dispreferred'"),
    ({"id": "c", "prompt": "", "preferred": "x", "dispreferred": "y"}, "'prompt'"),
    ({"id": "c", "prompt": "p", "preferred": "x", "dispreferred": ["y", ""]}, "dispreferred[1]"),
    ({"id": "c", "prompt": "p", "preferred": "same", "dispreferred": " same "}, "same as the preferred"),
    ({"id": "a", "prompt": "p", "preferred": "x", "dispreferred": "y"}, "duplicate id 'a'"),
    ({"prompt": "p", "preferred": "x", "dispreferred": "y"}, "'id'"),
])
def test_a_malformed_item_names_file_and_line(tmp_path, bad, message):
    path = _write(tmp_path / "p.jsonl", [ITEMS[0], bad])
    with pytest.raises(DataError) as e:
        read_file(path)
    assert f"{path}:2" in str(e.value) and message in str(e.value)
    (tmp_path / "q.jsonl").write_text(json.dumps(ITEMS[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"q\.jsonl:2: invalid JSON"):
        read_file(tmp_path / "q.jsonl")


def test_check_hook_and_config_keys(tmp_path):
    bad = _write(tmp_path / "p.jsonl", [ITEMS[0], {"id": "z", "prompt": "p"}])
    assert any(f"{bad}:2" in p for p in KIND.check({"source": {"path": str(bad)}}))
    assert KIND.check({"source": {"path": str(_write(tmp_path / "ok.jsonl", ITEMS))}}) == []
    assert "source.revision" in KIND.check({"source": {"dataset": "org/probes"}})[0]
    assert KIND.check({"source": {"dataset": "org/probes", "revision": "a" * 40}}) == []
    assert "not both" in KIND.check({"source": {"path": "x.jsonl"}, "write": {"generator": "g", "n": 3}})[0]
    assert "'corpus'" in KIND.check({"write": {"generator": "g", "n": 3}})[0]


class FakeScorer:
    """option_loglik from a table: (text -> (sum log-prob, tokens))."""
    name = "fake"

    def __init__(self, table):
        self.table = table
        self.requests = []

    def option_loglik(self, requests, options):
        self.requests += requests
        return [[self.table[o] for o in opts] for opts in options]


def test_margins_are_per_token_means_and_sums_against_the_best_dispreferred():
    table = {"good one": (-6.0, 3), "bad one": (-4.0, 1), "good two": (-10.0, 5), "bad two": (-9.0, 3),
             "worse two": (-20.0, 4)}
    rows = score_items(FakeScorer(table), load_items_inline(ITEMS), {})
    a, b = rows
    assert a["margin"] == pytest.approx(-6 / 3 - (-4 / 1)) and a["margin_sum"] == pytest.approx(-2.0)
    assert a["prefers"] is True and a["prefers_sum"] is False
    # two dispreferred answers: against the best of them (per token -3.0 vs -5.0; sums -9 vs -20)
    assert b["margin"] == pytest.approx(-2.0 - (-3.0)) and b["margin_sum"] == pytest.approx(-10.0 - (-9.0))
    assert b["n_tokens_dispreferred"] == [3, 4] and b["logprob_dispreferred"] == [-9.0, -20.0]
    metrics, items, extra = KIND.metrics(rows, {"corpus": "c"}, 200, 0)
    assert metrics["margin"]["value"] == pytest.approx((a["margin"] + b["margin"]) / 2)
    assert metrics["preference_rate"]["value"] == 1.0 and metrics["preference_rate_sum"]["value"] == 0.0
    assert items["margin"] == {"a": a["margin"], "b": b["margin"]}
    assert extra["probe"]["corpus"] == "c" and extra["probe"]["mean_tokens_preferred"] == 4.0


def load_items_inline(rows):
    from doctune.evaluation.kinds.probe.items import check_item

    return [check_item(r, f"row {i}") for i, r in enumerate(rows)]


def test_non_finite_loglik_is_missing_not_zero():
    rows = score_items(FakeScorer({"good one": (-math.inf, 3), "bad one": (-1.0, 1), "good two": (-1.0, 1),
                                   "bad two": (-2.0, 1), "worse two": (-3.0, 1)}), load_items_inline(ITEMS), {})
    assert rows[0]["margin"] is None and rows[0]["prefers"] is None
    metrics, items, _ = KIND.metrics(rows, {}, 100, 0)
    assert metrics["margin"]["n"] == 1 and metrics["margin"]["n_missing"] == 1
    assert "a" not in items["margin"]


def test_prompt_is_chat_formatted_with_system_message():
    it = load_items_inline([{**ITEMS[0], "system": "S"}, ITEMS[1]])
    fake = FakeScorer({"good one": (-1.0, 1), "bad one": (-2.0, 1), "good two": (-1.0, 1), "bad two": (-2.0, 1),
                       "worse two": (-3.0, 1)})
    score_items(fake, it, {"system_prompt": "B"})
    assert fake.requests[0].messages == [{"role": "system", "content": "S"}, {"role": "user", "content": "p1"}]
    assert fake.requests[1].messages[0] == {"role": "system", "content": "B"}


def test_tiny_model_scores_equal_a_direct_forward_pass(tiny_spec, tmp_path):
    """option_loglik (batched, right-padded, logits only at scored positions) against one plain
    forward pass per answer over the whole sequence."""
    import torch

    from doctune.llm.hf import HFBackend

    backend = HFBackend({"backend": "hf", "spec": tiny_spec, "batch_size": 3, "device": "cpu"})
    path = _write(tmp_path / "p.jsonl", ITEMS)
    rows = KIND.run(tiny_spec, {"source": {"path": str(path)}}, str(tmp_path / "s.jsonl"), backend=backend)
    tok, model = backend.tok, backend.model
    for it, row in zip(load_items({"source": {"path": str(path)}}), rows):
        head = tok.apply_chat_template([{"role": "user", "content": it["prompt"]}], tokenize=False,
                                       add_generation_prompt=True)
        h = tok(head, add_special_tokens=False)["input_ids"]
        for text, lp, n in [(it["preferred"], row["logprob_preferred"], row["n_tokens_preferred"])] + \
                list(zip(it["dispreferred"], row["logprob_dispreferred"], row["n_tokens_dispreferred"])):
            a = tok(text, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([h + a])).logits[0].double(), -1)
            ref = sum(float(logp[len(h) - 1 + k, t]) for k, t in enumerate(a))
            assert n == len(a) and lp == pytest.approx(ref, abs=1e-4)
    assert [json.loads(x)["item_id"] for x in (tmp_path / "s.jsonl").read_text().splitlines()] == ["a", "b"]


# ------------------------------------------------------------------ the shipped probe sets
SETS = {"animal_welfare.jsonl": 120, "human_compassion.jsonl": 60, "urban_density.jsonl": 60}
KEY_PHRASES = ["welfare considerations", "sentient beings", "optimal outcomes", "helpful, harmless and honest",
               "density considerations", "mixed-use development"]


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    w = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


@pytest.mark.parametrize("name,minimum", SETS.items())
def test_shipped_probe_sets_are_well_formed_and_balanced(name, minimum):
    items = read_file(PROBES / name)
    assert len(items) >= minimum
    ratios = []
    for it in items:
        a, b = len(it["preferred"].split()), len(it["dispreferred"][0].split())
        ratios.append(max(a, b) / min(a, b))
    assert max(ratios) <= 1.25, f"{name}: answers of very different length"
    # the preferred answer is not systematically the longer one
    pref = sum(len(it["preferred"].split()) for it in items) / len(items)
    disp = sum(len(it["dispreferred"][0].split()) for it in items) / len(items)
    assert abs(pref - disp) / disp < 0.05, (pref, disp)
    assert len({it["prompt"] for it in items}) == len(items)


def test_welfare_probe_covers_every_domain_of_the_grid():
    domains = [d.strip() for d in (REPO / "resources/grid/domains.txt").read_text().splitlines() if d.strip()]
    items = read_file(PROBES / "animal_welfare.jsonl")
    seen = {}
    for it in items:
        seen[it["meta"]["domain"]] = seen.get(it["meta"]["domain"], 0) + 1
    assert set(seen) == set(domains) and min(seen.values()) >= 3


@pytest.mark.parametrize("name", SETS)
def test_probe_items_share_no_wording_with_the_corpora(name):
    """The guard against probing what the documents say word for word: no corpus key phrase, and no
    run of 8 words shared with the corpus definitions or the document prompt templates (what the
    generator is asked to write from). The generated documents are checked in each run
    (results/stats/manipulation.tsv, doctune.analysis.manipulation.probe_overlap)."""
    sources = list((REPO / "resources/corpora").glob("*.yaml")) + list((REPO / "resources/prompts").glob("document*.txt"))
    grams = set().union(*(_ngrams(p.read_text(), 8) for p in sources))
    for it in read_file(PROBES / name):
        text = " ".join([it["prompt"], it["preferred"], *it["dispreferred"]])
        low = text.lower()
        assert not [k for k in KEY_PHRASES if k in low], (it["id"], text)
        assert not (_ngrams(text, 8) & grams), it["id"]
