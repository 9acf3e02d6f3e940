"""Judge validation against people: statistics, rating-sample export, ratings files, agreement."""
import csv
import itertools
import json
import random
from pathlib import Path

import pytest

from doctune.analysis.agreement import (METRICS, agreement_summary_rows, cohen_kappa, compute_agreement, judge_agreement,
                               export_rating_sample, judge_vs_judge, krippendorff_alpha, pair_stats,
                               raw_agreement, read_ratings)
from doctune.io import DataError, read_json
from doctune.analysis.summary import COLUMNS

REPO = Path(__file__).resolve().parents[1]
MODELS = ["zebra_arm", "yak_arm"]
JUDGES = ["judge_one", "judge_two"]
NASTY = 'Sure! <script>alert("x")</script> & "quoted", comma\nsecond line </pre><b>bold</b>'


# ------------------------------------------------------------------------------------------
# Statistics against hand-computed values
# ------------------------------------------------------------------------------------------

def test_kappa_textbook_example():
    # 50 units: yes/yes 20, yes/no 5, no/yes 10, no/no 15.
    # p_o = 35/50 = 0.7; p_yes(A) = 25/50, p_yes(B) = 30/50; p_e = .5*.6 + .5*.4 = 0.5;
    # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    x = [1] * 25 + [0] * 25
    y = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(x, y) == pytest.approx(0.4)
    assert raw_agreement(x, y) == pytest.approx(0.7)


def test_kappa_matches_direct_formula_on_random_labels():
    rng = random.Random(3)
    for _ in range(20):
        n = rng.randint(2, 40)
        x = [rng.randint(0, 1) for _ in range(n)]
        y = [v if rng.random() < 0.7 else 1 - v for v in x]
        po = sum(a == b for a, b in zip(x, y)) / n
        pe = sum((x.count(c) / n) * (y.count(c) / n) for c in (0, 1))
        want = None if pe == 1 else (po - pe) / (1 - pe)
        got = cohen_kappa(x, y)
        assert (got is None) == (want is None)
        if want is not None:
            assert got == pytest.approx(want)
        # agrees with the judges' own kappa helper too
        assert judge_agreement([{"item_id": i, "judge": "a", "score": v} for i, v in enumerate(x)]
                               + [{"item_id": i, "judge": "b", "score": v} for i, v in enumerate(y)]
                               )["pairs"]["a|b"]["kappa"] == (pytest.approx(want) if want is not None else None)


def test_kappa_undefined_is_none():
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) is None  # one label only: p_e = 1
    assert cohen_kappa([1], [0]) is None  # fewer than 2 units
    assert cohen_kappa([], []) is None
    assert raw_agreement([], []) is None
    with pytest.raises(ValueError):
        cohen_kappa([0, 2], [0, 1])


def test_alpha_krippendorff_binary_example():
    # Krippendorff (2011), "binary data, two observers, no missing data":
    # coincidences o00 = 10, o01 = o10 = 4, o11 = 2; n0 = 14, n1 = 6, n = 20;
    # alpha = 1 - (n - 1) * o01 / (n0 * n1) = 1 - 19 * 4 / 84 = 0.0952
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    assert krippendorff_alpha(list(zip(a, b))) == pytest.approx(1 - 76 / 84)


def test_alpha_krippendorff_nominal_example_with_missing_values():
    # Krippendorff (2011), 4 observers, 12 units, values 1..5, missing values; alpha = 0.743
    N = None
    data = [[1, 1, N, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
            [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [N, 5, 5, 5], [N, N, 1, 1], [N, 3, N, N]]
    assert krippendorff_alpha(data) == pytest.approx(0.743, abs=5e-4)


def _alpha_brute_force(units):
    """Alpha straight from the definition: coincidence matrix of ordered value pairs."""
    labels = sorted({v for u in units for v in u if v is not None})
    o = {(c, k): 0.0 for c in labels for k in labels}
    for u in units:
        vals = [v for v in u if v is not None]
        m = len(vals)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            o[(vals[i], vals[j])] += 1 / (m - 1)
    nc = {c: sum(o[(c, k)] for k in labels) for c in labels}
    n = sum(nc.values())
    do = sum(o[(c, k)] for c in labels for k in labels if c != k)
    de = sum(nc[c] * nc[k] for c in labels for k in labels if c != k)
    return 1 - (n - 1) * do / de


def test_alpha_matches_definition_on_random_data():
    rng = random.Random(5)
    for _ in range(15):
        units = [[rng.choice([0, 1, 1, None]) for _ in range(3)] for _ in range(rng.randint(4, 25))]
        units.append([0, 1, None])  # both labels present
        assert krippendorff_alpha(units) == pytest.approx(_alpha_brute_force(units))


def test_alpha_undefined_is_none():
    assert krippendorff_alpha([[1, 1], [1, 1], [1, None]]) is None
    assert krippendorff_alpha([[1, None], [0, None]]) is None


def test_pair_stats_ci_contains_estimate_and_is_seeded():
    rng = random.Random(11)
    x = [rng.randint(0, 1) for _ in range(60)]
    y = [v if rng.random() < 0.8 else 1 - v for v in x]
    x[0], y[1] = None, None
    s = pair_stats(x, y, n_bootstrap=500, seed=4)
    for m in METRICS:
        r = s[m]
        assert r["n"] == 58 and r["n_missing"] == 2
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
        assert r["ci_low"] < r["ci_high"]
    both = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    assert s["kappa"]["value"] == pytest.approx(cohen_kappa(*zip(*both)))
    assert s["alpha"]["value"] == pytest.approx(krippendorff_alpha(both))
    assert pair_stats(x, y, n_bootstrap=500, seed=4) == s
    assert pair_stats(x, y, n_bootstrap=500, seed=5)["kappa"]["ci_low"] != s["kappa"]["ci_low"]


def test_pair_stats_undefined_values_are_null_with_reason():
    s = pair_stats([1, 1, 1], [1, 1, 1], n_bootstrap=50)
    assert s["kappa"]["value"] is None and s["kappa"]["reason"]
    assert s["alpha"]["value"] is None and s["alpha"]["reason"]
    assert s["raw_agreement"]["value"] == 1.0
    s1 = pair_stats([1], [0], n_bootstrap=50)
    assert s1["kappa"]["value"] is None and s1["raw_agreement"]["ci_low"] is None


# ------------------------------------------------------------------------------------------
# Synthetic results: 2 models, a binary benchmark and a rubric one, 2 judges
# ------------------------------------------------------------------------------------------

def _label(model_i, item, dim, judge_i):
    base = (item * 7 + len(dim) + model_i * 3) % 5 < 2
    if judge_i == 1 and item % 4 == 0:
        base = not base
    return int(base)


def write_results(root: Path, judges=JUDGES, n_items=6):
    scores, comps = {}, {}
    for mi, model in enumerate(MODELS):
        for bench in ("ahb", "strongreject"):
            cpath = root / "completions" / model / f"{bench}.jsonl"
            spath = root / "scores" / model / f"{bench}.jsonl"
            cpath.parent.mkdir(parents=True, exist_ok=True)
            spath.parent.mkdir(parents=True, exist_ok=True)
            crow, srow = [], []
            for item in range(n_items):
                text = NASTY if (item == 2 and bench == "ahb") else f"answer {item} from a model"
                crow.append({"id": str(item), "epoch": 0, "prompt": f"Question {item}, with <b>tags</b>?",
                             "completion": text, "model": model})
                if bench == "ahb":
                    units = [("Moral Consideration", ""), ("Harm Minimization", "")]
                    if item == 1:
                        units += [("Moral Consideration", "animal=cat"), ("Moral Consideration", "animal=dog")]
                    units += [("Sentience Acknowledgement", "")] * (item % 2)
                    for ji, j in enumerate(judges):
                        for dim, combo in units:
                            score = _label(mi, item, dim + combo, ji)
                            if ji == 1 and item == 3 and dim == "Harm Minimization":
                                score = None
                            srow.append({"unit_id": f"{item}|e0|{dim}|{combo}|{j}", "item_id": str(item),
                                         "epoch": 0, "dimension": dim, "combination": combo, "judge": j,
                                         "judge_model": f"{j}-model", "score": score, "raw": "x",
                                         "fields": None, "weight": 1.0, "prob": None, "attempts": 1,
                                         "error": None})
                else:
                    for ji, j in enumerate(judges):
                        ref = _label(mi, item, "refused", ji)
                        fields = {"refused": ref, "convincing": 3, "specific": 2}
                        srow.append({"unit_id": f"{item}|e0|{j}", "item_id": str(item), "epoch": 0,
                                     "dimension": None, "combination": None, "judge": j,
                                     "judge_model": f"{j}-model", "score": (1 - ref) * 3 / 8, "raw": "y",
                                     "fields": fields, "weight": 1.0, "prob": None, "attempts": 1,
                                     "error": None})
            cpath.write_text("".join(json.dumps(r) + "\n" for r in crow))
            spath.write_text("".join(json.dumps(r) + "\n" for r in srow))
            scores.setdefault(model, {})[bench] = str(spath)
            comps.setdefault(model, {})[bench] = str(cpath)
    return scores, comps


@pytest.fixture
def results(tmp_path):
    return write_results(tmp_path / "results")


def export(tmp_path, scores, comps, per=2, seed=0, tag="a"):
    out = tmp_path / f"sample_{tag}"
    n = export_rating_sample(scores, comps, per, seed, str(out / "sample.csv"), str(out / "sample.html"),
                             str(out / "key.json"))
    return n, out / "sample.csv", out / "sample.html", out / "key.json"


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------

def test_export_stratified_counts_and_key(tmp_path, results):
    scores, comps = results
    n, csv_p, html_p, key_p = export(tmp_path, scores, comps, per=2)
    key = read_json(key_p)
    rows = read_csv(csv_p)
    assert n == len(rows) == len(key["units"])
    assert list(rows[0]) == ["rating_id", "benchmark", "dimension", "question", "response", "criterion",
                             "rating", "notes"]
    assert all(r["rating"] == "" and r["notes"] == "" for r in rows)
    # strata: ahb Moral Consideration has 8 units per model, Harm 6, Sentience 3; strongreject 6
    per = {}
    for u in key["units"]:
        per[(u["benchmark"], u["dimension"], u["model"])] = per.get((u["benchmark"], u["dimension"], u["model"]), 0) + 1
    assert set(per) == {(b, d, m) for m in MODELS for b, d in [("ahb", "Moral Consideration"),
                                                                ("ahb", "Harm Minimization"),
                                                                ("ahb", "Sentience Acknowledgement"),
                                                                ("strongreject", "refused")]}
    assert all(v == 2 for v in per.values())
    assert key["strata"]["ahb|Moral Consideration|zebra_arm"] == {"units": 8, "sampled": 2}
    # one unit per judged unit, every judge's verdict in the key
    ids = [(u["model"], u["benchmark"], u["unit_id"]) for u in key["units"]]
    assert len(set(ids)) == len(ids)
    assert all(set(u["judges"]) == set(JUDGES) for u in key["units"])
    sr = [u for u in key["units"] if u["benchmark"] == "strongreject"]
    assert all(u["label_kind"] == "refused" and u["judges"]["judge_one"]["label"] in (0, 1) for u in sr)
    assert [r["rating_id"] for r in rows] == [f"r{i:04d}" for i in range(1, n + 1)]
    assert [u["rating_id"] for u in key["units"]] == [r["rating_id"] for r in rows]
    # the criterion says what 1 and 0 mean; the combination is shown
    crit = {r["criterion"] for r in rows}
    assert all("Rate 1" in c for c in crit)


def test_export_takes_everything_when_stratum_is_small(tmp_path, results):
    scores, comps = results
    n, _, _, key_p = export(tmp_path, scores, comps, per=100)
    # per model: ahb 6*2 + 2 combos + 3 sentience = 17 units, strongreject 6
    assert n == 2 * (17 + 6)


def test_export_is_deterministic_and_seeded(tmp_path, results):
    scores, comps = results
    a = export(tmp_path, scores, comps, seed=1, tag="a")
    b = export(tmp_path, scores, comps, seed=1, tag="b")
    c = export(tmp_path, scores, comps, seed=2, tag="c")
    for x, y in zip(a[1:], b[1:]):
        assert Path(x).read_bytes() == Path(y).read_bytes()
    assert Path(a[1]).read_bytes() != Path(c[1]).read_bytes()


def test_export_hides_models_and_judges(tmp_path, results):
    scores, comps = results
    _, csv_p, html_p, key_p = export(tmp_path, scores, comps)
    for p in (csv_p, html_p):
        text = Path(p).read_text(encoding="utf-8")
        for secret in MODELS + JUDGES + ["judge_model", "-model"]:
            assert secret not in text, (p, secret)
    # while the key has them
    key_text = Path(key_p).read_text()
    assert all(m in key_text for m in MODELS + JUDGES)
    # the raters' order is not grouped by model: both models appear among the first rows
    key = read_json(key_p)
    first = {u["model"] for u in key["units"][:6]}
    assert len(first) == 2


def test_html_escapes_everything(tmp_path, results):
    scores, comps = results
    _, csv_p, html_p, _ = export(tmp_path, scores, comps, per=100)
    page = Path(html_p).read_text(encoding="utf-8")
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "</pre><b>bold" not in page
    assert "&lt;b&gt;tags&lt;/b&gt;" in page
    assert page.count("<script>") == 1  # only the page's own script
    assert "http://" not in page and "https://" not in page  # self-contained
    assert 'type="radio"' in page and "localStorage" in page and "rating_id,rater,rating" in page
    # the CSV keeps the text exactly (csv quoting, not HTML escaping)
    rows = read_csv(csv_p)
    assert NASTY in {r["response"] for r in rows}


def test_export_errors_on_missing_completion(tmp_path, results):
    scores, comps = results
    p = Path(comps["zebra_arm"]["ahb"])
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[1:]) + "\n")  # drop item 0
    with pytest.raises(DataError, match=r"ahb\.jsonl:\d+: no completion for item '0'"):
        export(tmp_path, scores, comps)


# ------------------------------------------------------------------------------------------
# Ratings files
# ------------------------------------------------------------------------------------------

def write_ratings(path, rows, header="rating_id,rater,rating"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def test_ratings_errors_name_file_and_line(tmp_path, results):
    scores, comps = results
    _, _, _, key_p = export(tmp_path, scores, comps)
    out = str(tmp_path / "agreement.json")
    bad = write_ratings(tmp_path / "bad1.csv", [("r0001", "ann", 1), ("r9999", "ann", 0)])
    with pytest.raises(DataError, match=r"bad1\.csv:3: unknown rating_id 'r9999'"):
        compute_agreement(str(key_p), bad, out, n_bootstrap=10)
    bad = write_ratings(tmp_path / "bad2.csv", [("r0001", "ann", 1), ("r0002", "ann", 0), ("r0003", "ann", 2)])
    with pytest.raises(DataError, match=r"bad2\.csv:4: rating must be 0, 1 or blank, got '2'"):
        compute_agreement(str(key_p), bad, out, n_bootstrap=10)
    bad = write_ratings(tmp_path / "bad3.csv", [("r0001", "ann", 1), ("r0001", "ann", 0)])
    with pytest.raises(DataError, match=r"bad3\.csv:3: rater 'ann' rated 'r0001' again \(first on line 2\)"):
        compute_agreement(str(key_p), bad, out, n_bootstrap=10)
    bad = write_ratings(tmp_path / "bad4.csv", [("r0001", 1)], header="rating_id,score")
    with pytest.raises(DataError, match=r"bad4\.csv:1: .*'rating' column"):
        compute_agreement(str(key_p), bad, out, n_bootstrap=10)
    assert not Path(out).exists()


def test_filled_raters_csv_is_a_ratings_file(tmp_path, results):
    """The raters' CSV itself, filled in (multi-line responses, no rater column), can be read back;
    line numbers count physical lines."""
    scores, comps = results
    _, csv_p, _, key_p = export(tmp_path, scores, comps, per=100)
    rows = read_csv(csv_p)
    for i, r in enumerate(rows):
        r["rating"] = str(i % 2) if i % 5 else ""
    filled = tmp_path / "ann.csv"
    with filled.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    ids = {u["rating_id"] for u in read_json(key_p)["units"]}
    got, counts = read_ratings(str(filled), ids)
    assert counts == {"rows": len(rows), "blank": sum(1 for r in rows if r["rating"] == "")}
    assert set(next(iter(got.values()))) == {"ann"}  # rater = file stem
    # a bad rating after the multi-line response is reported on its physical line
    rows[-1]["rating"] = "yes"
    with filled.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    physical = filled.read_text(encoding="utf-8").count("\n")
    first_line_of_last = physical - rows[-1]["response"].count("\n") - rows[-1]["question"].count("\n")
    with pytest.raises(DataError, match=rf"ann\.csv:{first_line_of_last}: rating must be"):
        read_ratings(str(filled), ids)


def test_example_ratings_fixture_parses(tmp_path):
    scores, comps = write_results(tmp_path / "results", n_items=12)
    n, _, _, key_p = export(tmp_path, scores, comps, per=4)
    assert n >= 24
    res = compute_agreement(str(key_p), str(REPO / "resources" / "fixtures" / "ratings_example.csv"),
                            str(tmp_path / "a.json"), n_bootstrap=50)
    assert res["ratings"]["raters"] == ["rater_a", "rater_b"]
    assert res["ratings"]["blank"] == 2
    assert any(r["comparison"] == "human~human" for r in res["rows"])


# ------------------------------------------------------------------------------------------
# Agreement
# ------------------------------------------------------------------------------------------

def _rows(res, comparison, bench="all", dim="all"):
    return {r["metric"]: r for r in res["rows"]
            if r["comparison"] == comparison and r["benchmark"] == bench and r["dimension"] == dim}


def test_compute_agreement_people_vs_judges(tmp_path, results):
    scores, comps = results
    _, _, _, key_p = export(tmp_path, scores, comps, per=3)
    key = read_json(key_p)["units"]
    # ann copies judge_one (her first unit blank); bob copies judge_one except on every third unit
    ann, bob = [], []
    for i, u in enumerate(key):
        lab = u["judges"]["judge_one"]["label"]
        ann.append((u["rating_id"], "ann", "" if i == 0 else lab))
        bob.append((u["rating_id"], "bob", lab if (i % 3 or i == 0) else 1 - lab))
    ratings = write_ratings(tmp_path / "ratings.csv", ann + bob)
    out = tmp_path / "agreement.json"
    res = compute_agreement(str(key_p), ratings, str(out), n_bootstrap=200, seed=1, scores=scores)
    assert res == read_json(out)
    assert res["status"] == "ok" and res["ratings"]["blank"] == 1
    assert res["ratings"]["raters"] == ["ann", "bob"]

    # consensus = majority; ann/bob ties (every third unit, except the blank one) are left out
    cons, j1 = [], []
    for i, u in enumerate(key):
        a = None if i == 0 else u["judges"]["judge_one"]["label"]
        b = bob[i][2]
        votes = [v for v in (a, b) if v is not None]
        c = votes[0] if len(set(votes)) == 1 else None
        if c is not None:
            cons.append(c)
            j1.append(u["judges"]["judge_one"]["label"])
    h1 = _rows(res, "human~judge_one")
    assert h1["kappa"]["n"] == len(cons) and h1["kappa"]["n_missing"] == len(key) - len(cons)
    assert h1["kappa"]["value"] == pytest.approx(cohen_kappa(cons, j1)) == pytest.approx(1.0)
    assert h1["raw_agreement"]["value"] == 1.0
    # alpha: ann, bob and judge_one as three coders
    units = [[None if i == 0 else u["judges"]["judge_one"]["label"], bob[i][2], u["judges"]["judge_one"]["label"]]
             for i, u in enumerate(key)]
    assert h1["alpha"]["value"] == pytest.approx(krippendorff_alpha(units))
    assert h1["alpha"]["ci_low"] <= h1["alpha"]["value"] <= h1["alpha"]["ci_high"]

    h2 = _rows(res, "human~judge_two")
    assert h2["kappa"]["value"] < 1.0  # judge_two flips some verdicts and has nulls
    # human~human: two raters -> Cohen's kappa between ann and bob on units both rated
    hh = _rows(res, "human~human")
    both = [(ann[i][2], bob[i][2]) for i in range(1, len(key))]
    assert hh["kappa"]["value"] == pytest.approx(cohen_kappa(*zip(*both)))
    assert hh["raw_agreement"]["value"] == pytest.approx(raw_agreement(*zip(*both)))
    assert hh["kappa"]["n"] == len(key) - 1 and hh["kappa"]["n_missing"] == 1
    # per (benchmark, dimension) and per benchmark rows exist for every comparison
    groups = {(r["benchmark"], r["dimension"]) for r in res["rows"] if r["comparison"] == "human~judge_one"}
    assert {("ahb", "Moral Consideration"), ("ahb", "all"), ("strongreject", "refused"),
            ("strongreject", "all"), ("all", "all")} <= groups
    # judge vs judge comes from the score files (all units, not only the sample)
    jj = _rows(res, "judge_one~judge_two")
    assert jj["kappa"]["n"] + jj["kappa"]["n_missing"] == 2 * (17 + 6)
    assert jj["kappa"]["n_missing"] == 2  # judge_two's null on item 3, Harm Minimization, per model
    for r in res["rows"]:
        assert r["metric"] in METRICS
        if r["value"] is None:
            assert r["reason"] and r["ci_low"] is None
    assert "NaN" not in out.read_text()


def test_judge_vs_judge_matches_judging_helper(results):
    scores, _ = results
    rows = judge_vs_judge(scores, n_bootstrap=100)
    # pooled over models: the existing judging helper on all models' ahb lines (item ids made unique)
    pooled = []
    for model in MODELS:
        for bench in ("ahb",):
            for r in (json.loads(x) for x in Path(scores[model][bench]).read_text().splitlines()):
                r["item_id"] = f"{model}:{r['item_id']}"
                pooled.append(r)
    want = judge_agreement(pooled)["pairs"]["judge_one|judge_two"]
    got = _rows({"rows": rows}, "judge_one~judge_two", "ahb", "all")
    assert got["kappa"]["value"] == pytest.approx(want["kappa"])
    assert got["raw_agreement"]["value"] == pytest.approx(want["agreement"])
    assert got["kappa"]["n"] == want["n"]


def test_no_ratings_single_judge_is_missing(tmp_path):
    scores, comps = write_results(tmp_path / "r1", judges=["judge_one"])
    _, _, _, key_p = export(tmp_path, scores, comps)
    res = compute_agreement(str(key_p), None, str(tmp_path / "a.json"), scores=scores)
    assert res["status"] == "missing"
    assert res["reason"] == "no ratings file and fewer than two judges"
    assert res["rows"] == []
    # nothing was asked for (no ratings, one judge): no placeholder row in the summary
    assert agreement_summary_rows(str(tmp_path / "a.json")) == []


def test_unusable_ratings_give_missing_rows_per_judge(tmp_path):
    scores, comps = write_results(tmp_path / "r1", judges=["judge_one"])
    _, _, _, key_p = export(tmp_path, scores, comps)
    ratings = tmp_path / "ratings.csv"
    first = read_json(key_p)["units"][0]["rating_id"]
    ratings.write_text(f"rating_id,rater,rating\n{first},ann,\n")    # a blank rating only
    res = compute_agreement(str(key_p), str(ratings), str(tmp_path / "a.json"), scores=scores)
    assert res["status"] == "missing"
    rows = agreement_summary_rows(str(tmp_path / "a.json"))
    assert rows and all(r["model"] == "human~judge_one" and r["benchmark"] and r["status"] == "missing"
                        for r in rows), rows


def test_rating_sample_keeps_a_bare_carriage_return_in_its_field(tmp_path):
    import pandas as pd

    scores, comps = write_results(tmp_path / "r1")
    for per in comps.values():
        for path in per.values():
            rows = [json.loads(x) for x in Path(path).read_text().splitlines()]
            for r in rows:
                r["completion"] = f"line one\rline two, {r['completion']}\r\nend"
            Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    n, csv_p, _, _ = export(tmp_path, scores, comps, per=3)
    frame = pd.read_csv(csv_p, keep_default_na=False)
    assert len(frame) == n
    assert all(x.startswith("line one\rline two, ") and x.endswith("\r\nend") for x in frame["response"])
    assert [r["response"] for r in read_csv(csv_p)] == list(frame["response"])


def test_no_ratings_two_judges_gives_judge_rows_only(tmp_path, results):
    scores, _ = results
    res = compute_agreement(None, None, str(tmp_path / "a.json"), n_bootstrap=50, scores=scores)
    assert res["status"] == "ok"
    assert {r["comparison"] for r in res["rows"]} == {"judge_one~judge_two"}


def test_summary_rows(tmp_path, results):
    scores, comps = results
    _, _, _, key_p = export(tmp_path, scores, comps, per=3)
    units = read_json(key_p)["units"]
    # a rater who always says 1 on strongreject: kappa undefined there -> missing row with a note
    ratings = write_ratings(tmp_path / "r.csv", [(u["rating_id"], "ann", 1 if u["benchmark"] == "strongreject"
                                                  else u["judges"]["judge_one"]["label"]) for u in units])
    out = tmp_path / "a.json"
    compute_agreement(str(key_p), ratings, str(out), n_bootstrap=50, scores=scores)
    rows = agreement_summary_rows(str(out))
    assert rows and all(set(r) <= set(COLUMNS) for r in rows)
    r = next(r for r in rows if r["model"] == "human~judge_one" and r["benchmark"] == "ahb"
             and r["metric"] == "kappa:Moral Consideration")
    assert r["status"] == "ok" and r["value"] == pytest.approx(1.0)
    sr = [r for r in rows if r["model"].startswith("human~") and r["metric"] == "kappa:refused"]
    assert sr
    for r in sr:
        if r["value"] is None:
            assert r["status"] == "missing" and r["note"]
    assert any(r["metric"] == "kappa:all" and r["benchmark"] == "all" for r in rows)
    from doctune.analysis.stats import format_tsv
    text = format_tsv(rows, COLUMNS)
    assert "nan" not in text.lower()


def test_criteria_from_benchmark_config_fill_placeholders(tmp_path, results, repo_root, monkeypatch):
    from doctune.analysis.agreement import criteria_from_benchmarks

    monkeypatch.chdir(repo_root)
    crit = criteria_from_benchmarks({"ahb": {"kind": "ahb", "source": {"path": "resources/fixtures/ahb"}},
                                     "strongreject": {"kind": "strongreject", "source": {}}})
    assert set(crit) == {"ahb"} and "{{animal}}" in crit["ahb"]["Moral Consideration"]
    scores, comps = results
    out = tmp_path / "s"
    export_rating_sample(scores, comps, 100, 0, str(out / "s.csv"), str(out / "s.html"), str(out / "k.json"),
                         criteria=crit)
    rows = read_csv(out / "s.csv")
    cat = [r["criterion"] for r in rows if "(for animal=cat)" in r["criterion"]]
    assert cat and all("cats involved" in c and "{{" not in c for c in cat)
    plain = [r["criterion"] for r in rows if r["dimension"] == "Moral Consideration" and "(for animal" not in r["criterion"]]
    assert plain and all("animals involved" in c for c in plain)


_DOM_STUB = r"""
function el(attrs){ return {attrs: attrs || {}, listeners: {}, value: '', checked: false,
  classList: {s: new Set(), toggle(c, on){ on ? this.s.add(c) : this.s.delete(c); }},
  getAttribute(k){ return this.attrs[k]; }, addEventListener(t, f){ this.listeners[t] = f; }}; }
const units = [], radios = {};
for (const id of IDS) {
  const u = el({'data-id': id}); const r1 = el(); r1.value = '1'; const r0 = el(); r0.value = '0';
  radios[id] = [r1, r0]; const ta = el(); const clr = el();
  u.querySelectorAll = () => [r1, r0]; u.querySelector = q => q === 'textarea' ? ta : clr; u.ta = ta;
  units.push(u);
}
const byId = {rater: el(), 'only-unrated': el(), progress: el(), download: el()};
const store = {};
global.localStorage = {getItem: k => store[k] || null, setItem: (k, v) => { store[k] = v; }};
let blob = null;
global.Blob = function(parts){ blob = parts.join(''); };
global.URL = {createObjectURL: () => 'blob:x'};
global.alert = () => {};
global.document = {body: {getAttribute: () => 'sid', appendChild(){}, removeChild(){}},
  querySelectorAll: () => units, getElementById: id => byId[id], createElement: () => ({click(){}})};
require(SCRIPT);
radios[IDS[0]][0].listeners.change();
radios[IDS[1]][1].listeners.change();
units[1].ta.value = 'a "quoted", note'; units[1].ta.listeners.input();
byId.rater.value = 'Ann'; byId.rater.listeners.input();
byId.download.listeners.click();
process.stdout.write(JSON.stringify({blob: blob, progress: byId.progress.textContent,
                                     stored: store['doctune-ratings-sid']}));
"""


def test_rating_page_script_downloads_a_ratings_file(tmp_path, results):
    """Runs the page's script under node with a minimal DOM stand-in: two ratings and a note give a
    CSV that read_ratings accepts."""
    import re
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    scores, comps = results
    _, _, html_p, key_p = export(tmp_path, scores, comps)
    js = re.search(r"<script>(.*)</script>", Path(html_p).read_text(encoding="utf-8"), re.S).group(1)
    script = tmp_path / "page.js"
    script.write_text(js)
    ids = [u["rating_id"] for u in read_json(key_p)["units"]]
    stub = tmp_path / "stub.js"
    stub.write_text(_DOM_STUB.replace("IDS", json.dumps(ids)).replace("SCRIPT", json.dumps(str(script))))
    res = subprocess.run([node, str(stub)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["progress"] == f"2 of {len(ids)} rated"
    assert json.loads(got["stored"])["rater"] == "Ann"
    out = tmp_path / "ratings_Ann.csv"
    out.write_text(got["blob"])
    ratings, counts = read_ratings(str(out), set(ids))
    assert ratings == {ids[0]: {"Ann": 1}, ids[1]: {"Ann": 0}}
    assert counts == {"rows": len(ids), "blank": len(ids) - 2}
    rows = read_csv(out)
    assert rows[1]["notes"] == 'a "quoted", note'
