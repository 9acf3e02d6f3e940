"""Figures: written as PNG, missing values are gaps (NaN), never zeros."""
import json
import math

from doctune.analysis import plots


def mfile(tmp_path, model, bench, metrics, primary="overall_mean"):
    p = tmp_path / "m" / model / f"{bench}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"status": "ok", "primary_metric": primary, "metrics": metrics}))
    return str(p)


def val(v):
    return {"value": v, "ci_low": None if v is None else v - 0.1,
            "ci_high": None if v is None else v + 0.1, "n": 4, "n_missing": 0}


def is_png(path):
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_robustness_curve_gaps(tmp_path):
    files = {"doc": {"ahb": mfile(tmp_path, "doc", "ahb", {"overall_mean": val(0.7)})},
             "doc.post8": {"ahb": mfile(tmp_path, "doc.post8", "ahb", {"overall_mean": val(0.5)})},
             "instruct": {"ahb": mfile(tmp_path, "instruct", "ahb", {"overall_mean": val(None)})},
             "instruct.post4": {"ahb": mfile(tmp_path, "instruct.post4", "ahb",
                                             {"overall_mean": val(0.4)})}}
    out = tmp_path / "plots" / "robustness.png"
    data = plots.robustness_curve(files, ["doc", "instruct"], [8, 4], "ahb", None, str(out))
    assert is_png(out)
    assert data["x"] == [0, 4, 8] and data["metric"] == "overall_mean"
    doc = data["series"]["doc"]["value"]
    assert doc[0] == 0.7 and math.isnan(doc[1]) and doc[2] == 0.5
    ins = data["series"]["instruct"]["value"]
    assert math.isnan(ins[0]) and ins[1] == 0.4 and math.isnan(ins[2])
    assert set(data["missing"]) == {"doc.post4", "instruct", "instruct.post8"}


def test_dimension_profile(tmp_path):
    files = {"doc": {"ahb": mfile(tmp_path, "doc", "ahb", {"overall_mean": val(0.6),
                                                          "dimension:Sentience": val(0.8),
                                                          "dimension:Harm": val(None)})},
             "base": {"ahb": mfile(tmp_path, "base", "ahb", {"dimension:Harm": val(0.3),
                                                            "dimension:Scope": val(0.2)})}}
    out = tmp_path / "dim.png"
    data = plots.dimension_profile(files, ["doc", "base", "absent"], "ahb", str(out), demo=True)
    assert is_png(out)
    assert data["dimensions"] == ["Sentience", "Harm", "Scope"]
    assert data["series"]["doc"]["value"][0] == 0.8 and math.isnan(data["series"]["doc"]["value"][1])
    assert math.isnan(data["series"]["base"]["value"][0])
    assert all(math.isnan(v) for v in data["series"]["absent"]["value"])
    # nothing to draw still gives a figure that says so
    empty = plots.dimension_profile(files, ["doc"], "nobench", str(tmp_path / "e.png"))
    assert empty["dimensions"] == [] and is_png(tmp_path / "e.png")


def comparisons_tsv(tmp_path, rows):
    cols = ["benchmark", "metric", "model_a", "model_b", "p_value", "p_holm", "significant"]
    p = tmp_path / "comparisons.tsv"
    p.write_text("# DEMO\n" + "\t".join(cols) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return str(p)


def test_robustness_curves_every_benchmark_with_reference_and_significance(tmp_path):
    files = {}
    for model, v in {"base": 0.5, "doc": 0.9, "instruct": 0.6, "doc.post4": 0.8, "instruct.post4": 0.55}.items():
        files[model] = {"ahb": mfile(tmp_path, model, "ahb", {"overall_mean": val(v)}),
                        "sr": mfile(tmp_path, model, "sr", {"score": val(v / 2)}, primary="score")}
    comps = plots.read_comparisons(comparisons_tsv(tmp_path, [
        ["ahb", "overall_mean", "doc", "instruct", "0.001", "0.002", "true"],
        ["ahb", "overall_mean", "doc.post4", "instruct.post4", "0.03", "0.06", "false"],
        ["sr", "score", "doc.post4", "instruct.post4", "0.001", "0.004", "true"],
        ["sr", "overall_mean", "doc", "instruct", "0.001", "0.004", "true"],  # another metric: ignored
    ]))
    out = tmp_path / "rob.png"
    data = plots.robustness_curves(files, ["doc", "instruct"], [4], {"ahb": "ahb", "sr": "strongreject"}, str(out),
                                   references={"doc": "base", "instruct": "base"}, comparisons=comps)
    assert is_png(out) and list(data) == ["ahb", "sr"]
    assert data["ahb"]["metric"] == "overall_mean" and data["sr"]["metric"] == "score"
    assert data["ahb"]["reference"]["base"]["value"] == 0.5 and data["sr"]["reference"]["base"]["value"] == 0.25
    assert [(m["x"], m["model_a"]) for m in data["ahb"]["significant"]] == [(0, "doc")]  # Holm-corrected 0.06: no
    assert [(m["x"], m["model_b"]) for m in data["sr"]["significant"]] == [(4, "instruct.post4")]
    assert data["sr"]["series"]["doc"]["value"] == [0.45, 0.4]
    assert plots.metric_label("overall_mean") != "overall_mean" and plots.metric_label("dimension:Harm") == "Harm"


def test_dimension_profiles_every_benchmark_with_n(tmp_path):
    def dim(v, n):
        return {**val(v), "n": n}

    files = {"doc": {"ahb": mfile(tmp_path, "doc", "ahb", {"dimension:Sentience": dim(0.8, 3)}),
                     "hc": mfile(tmp_path, "doc", "hc", {"dimension:Fairness": dim(0.4, 5),
                                                         "dimension:Dignity": dim(0.6, 2)})},
             "base": {"ahb": mfile(tmp_path, "base", "ahb", {"dimension:Sentience": dim(0.3, 4)})}}
    data = plots.dimension_profiles(files, ["doc", "base"], {"ahb": "ahb", "hc": "compassion"},
                                    str(tmp_path / "p.png"))
    assert is_png(tmp_path / "p.png")
    assert data["ahb"]["series"]["doc"]["n"] == [3] and data["ahb"]["series"]["base"]["n"] == [4]
    assert data["hc"]["dimensions"] == ["Fairness", "Dignity"] and data["hc"]["series"]["doc"]["n"] == [5, 2]
    assert math.isnan(data["hc"]["series"]["base"]["value"][0]) and data["hc"]["series"]["base"]["n"] == [None, None]


def test_overview(tmp_path):
    files = {"doc": {"ahb": mfile(tmp_path, "doc", "ahb", {"overall_mean": val(0.7)}),
                     "hs": mfile(tmp_path, "doc", "hs", {"acc": val(0.3)}, primary="acc")},
             "base": {"ahb": mfile(tmp_path, "base", "ahb", {"overall_mean": val(None)})}}
    data = plots.overview(files, ["base", "doc"], {"ahb": "ahb", "hs": "lm_eval"}, str(tmp_path / "o.png"),
                          demo=True)
    assert is_png(tmp_path / "o.png")
    assert data["metrics"] == {"ahb": "overall_mean", "hs": "acc"}
    assert data["value"][1] == [0.7, 0.3] and all(math.isnan(v) for v in data["value"][0])
