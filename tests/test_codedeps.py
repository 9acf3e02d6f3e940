"""doctune.workflow.codedeps: the package files a rule's script reaches, found without importing them."""
from pathlib import Path

from doctune.workflow.codedeps import code_files, code_hash

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def rel(files):
    out = set()
    for f in files:
        try:
            out.add(f.relative_to(SRC.resolve()).as_posix())
        except ValueError:
            out.add(f.name)
    return out


def test_real_scripts_reach_their_stage_modules_only():
    train = rel(code_files(REPO / "scripts/train.py", SRC))
    assert {"doctune/training/loop.py", "doctune/training/step.py", "doctune/workflow/pipeline.py",
            "doctune/io.py", "doctune/__init__.py", "_doctune_path.py", "train.py"} <= train
    assert "doctune/analysis/stats.py" not in train and "doctune/llm/gemini.py" not in train
    comp = rel(code_files(REPO / "scripts/comparisons.py", SRC))
    assert "doctune/analysis/stats.py" in comp and not any(f.startswith("doctune/training/") for f in comp)
    docs = rel(code_files(REPO / "scripts/documents.py", SRC))
    assert {"doctune/documents/generate.py", "doctune/llm/gemini.py", "doctune/llm/cache.py"} <= docs
    judge = rel(code_files(REPO / "scripts/judge.py", SRC))
    assert "doctune/llm/gemini.py" in judge and "doctune/analysis/stats.py" not in judge


def _pkg(tmp_path, files):
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_static_walk_follows_every_import_form_without_running_code(tmp_path):
    root = _pkg(tmp_path, {
        "src/doctune/__init__.py": "",
        "src/doctune/a.py": "from .b import used\nfrom . import c\n",
        "src/doctune/b.py": ("def used():\n    from .lazy import x\n    return helper()\n"
                             "def helper():\n    import doctune.deep.mod\n"
                             "def unused():\n    from . import never\n"
                             "if __name__ == '__main__':\n    from . import mainonly\n"),
        "src/doctune/c.py": "raise SystemExit('never executed')\n",
        "src/doctune/lazy.py": "x = 1\n",
        "src/doctune/never.py": "",
        "src/doctune/mainonly.py": "",
        "src/doctune/deep/__init__.py": "",
        "src/doctune/deep/mod.py": "",
        "src/doctune/kinds/__init__.py": ("import importlib\n"
                                          "def get(kind):\n    return importlib.import_module(f'.{kind}', __package__)\n"),
        "src/doctune/kinds/ahb.py": "",
        "src/doctune/reg2/__init__.py": ("import importlib\n_M = {'a': 'a'}\n"
                                         "def get(k):\n    m = _M[k]\n"
                                         "    return importlib.import_module(m if '.' in m else f'{__name__}.{m}')\n"),
        "src/doctune/reg2/a.py": "",
        "src/doctune/kinds/sub/x.py": "",
        "src/doctune/reg.py": "KINDS = {'s': 'doctune.registered'}\n",
        "src/doctune/registered.py": "",
        "src/doctune/other.py": "",
        "scripts/_helper.py": "",
        "scripts/s.py": ("import _helper\nfrom doctune.a import *\nfrom doctune.kinds import get\nimport doctune.reg\n"
                         "from doctune.reg2 import get as get2\n"),
    })
    got = rel_to(code_files(root / "scripts/s.py", root / "src"), root)
    assert got == {"scripts/s.py", "scripts/_helper.py", "src/doctune/__init__.py", "src/doctune/a.py",
                   "src/doctune/b.py", "src/doctune/c.py", "src/doctune/lazy.py", "src/doctune/deep/__init__.py",
                   "src/doctune/deep/mod.py", "src/doctune/kinds/__init__.py", "src/doctune/kinds/ahb.py",
                   "src/doctune/kinds/sub/x.py", "src/doctune/reg.py", "src/doctune/registered.py",
                   "src/doctune/reg2/__init__.py", "src/doctune/reg2/a.py"}
    h = code_hash(root / "scripts/s.py", root / "src")
    (root / "src/doctune/other.py").write_text("changed = True\n")      # not reached: same hash
    assert code_hash(root / "scripts/s.py", root / "src") == h
    (root / "src/doctune/lazy.py").write_text("x = 2\n")                  # reached lazily: new hash
    assert code_hash(root / "scripts/s.py", root / "src") != h


def rel_to(files, root):
    return {f.relative_to(root.resolve()).as_posix() for f in files}


def test_a_rule_hashes_only_the_kinds_it_uses(tmp_path):
    """The registry's computed import takes every kind folder; skip_trees leaves out the kinds a rule
    does not use, while explicit imports between kinds are still followed."""
    root = _pkg(tmp_path, {
        "src/doctune/__init__.py": "",
        "src/doctune/kinds/__init__.py": ("import importlib\n"
                                          "def get(name):\n    return importlib.import_module(f'{__name__}.{name}')\n"),
        "src/doctune/kinds/a/__init__.py": "",
        "src/doctune/kinds/b/__init__.py": "from ..a import x\n",
        "src/doctune/kinds/c/__init__.py": "",
        "scripts/s.py": "from doctune.kinds import get\n",
    })
    k = root / "src/doctune/kinds"
    every = rel_to(code_files(root / "scripts/s.py", root / "src"), root)
    assert {"src/doctune/kinds/a/__init__.py", "src/doctune/kinds/c/__init__.py"} <= every
    only_b = rel_to(code_files(root / "scripts/s.py", root / "src", skip_trees=(k / "a", k / "c")), root)
    assert "src/doctune/kinds/c/__init__.py" not in only_b
    assert {"src/doctune/kinds/b/__init__.py", "src/doctune/kinds/a/__init__.py"} <= only_b   # b imports a
    h = code_hash(root / "scripts/s.py", root / "src", skip_trees=(k / "c",))
    (k / "c/__init__.py").write_text("# an edit\n")
    assert code_hash(root / "scripts/s.py", root / "src", skip_trees=(k / "c",)) == h
