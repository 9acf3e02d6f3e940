"""Figures: written as PNG, missing values are gaps (NaN), never zeros."""
import json
import math

from doctune import plots


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
