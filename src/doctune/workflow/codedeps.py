"""Which package files a rule's script runs, so that changing them reruns the rule.

Snakemake's ``code`` rerun trigger compares only a rule's own ``script:`` file. `code_files`
walks the script's imports transitively (with ``ast``; nothing is imported or executed) and
returns every file of the ``doctune`` package it can reach: ``import doctune.x``,
``from doctune.x import y`` (``y`` a module or a name), relative imports inside the package,
imports inside functions (lazy imports count, for the functions that can run: those a script
imports by name and the top-level functions and classes they refer to in their module; a module
imported whole counts whole), the ``__init__.py`` of every package on the way, and sibling helper modules of the script
(``scripts/_doctune_path.py``). Dynamic imports are followed when they can be resolved
statically: ``importlib.import_module("doctune.a.b")``, a string constant naming a package
module (a registry such as ``{"ahb": "doctune.evaluation.ahb"}``), and an f-string or
``package=``-relative name (``import_module(f"doctune.evaluation.{kind}")``,
``import_module(f".{kind}", __package__)``), which takes the whole package it points into.

`code_hash` is a content hash of those files; the workflow passes it to every rule as the
``code`` param, so a change to any module a rule's script reaches reruns that rule and what
follows (params trigger), and a change elsewhere does not.
"""
from __future__ import annotations

import ast
import hashlib
import os
from functools import lru_cache
from pathlib import Path

PACKAGE = "doctune"


ALL = "*"


def _is_main_guard(node: ast.AST) -> bool:
    t = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(t, ast.Compare) and isinstance(t.left, ast.Name)
            and t.left.id == "__name__" and any(isinstance(c, ast.Constant) and c.value == "__main__"
                                                for c in t.comparators))


def _events(top: ast.AST) -> tuple[list[ast.AST], set[str]]:
    """The nodes of one top-level statement that can import something (imports, import_module /
    __import__ calls, dotted string constants) and every plain name it uses: one walk, kept."""
    events: list[ast.AST] = []
    names: set[str] = set()
    for n in ast.walk(top):
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            events.append(n)
        elif isinstance(n, ast.Call):
            f = n.func
            if (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")) in ("import_module", "__import__"):
                events.append(n)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and "." in n.value:
            events.append(n)
    return events, names


class _ModuleInfo:
    """One parsed file: the imports its module-level code runs, and per top-level function or
    class the imports inside it and the other top-level names it refers to (computed once)."""

    def __init__(self, tree: ast.Module | None):
        self.defs: dict[str, ast.AST] = {}
        self.module_nodes: list[ast.AST] = []
        self._events: dict[int, list[ast.AST]] = {}
        self._refs: dict[int, set[str]] = {}
        for node in (tree.body if tree is not None else []):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defs[node.name] = node
            elif _is_main_guard(node):
                continue                # `if __name__ == "__main__":` does not run on import
            else:
                self.module_nodes.append(node)
        for node in self.module_nodes + list(self.defs.values()):
            events, names = _events(node)
            self._events[id(node)] = events
            self._refs[id(node)] = names & set(self.defs)

    def events(self, node: ast.AST) -> list[ast.AST]:
        """The nodes of a top-level statement that can import something."""
        return self._events[id(node)]

    def refs(self, nodes: list[ast.AST]) -> set[str]:
        return set().union(*(self._refs[id(n)] for n in nodes)) if nodes else set()

    def closure(self, names: set[str]) -> list[ast.AST]:
        """The top-level definitions `names` reach through references inside this module,
        plus the module-level code (which always runs on import)."""
        seen: set[str] = set()
        todo = [n for n in names if n in self.defs] + sorted(self.refs(self.module_nodes))
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            todo += [m for m in self._refs[id(self.defs[n])] if m not in seen]
        return self.module_nodes + [self.defs[n] for n in sorted(seen)]


#: parsed files, shared by every walk of the process (one Snakemake call hashes every rule's code:
#: each file is read and parsed once), keyed by path and (mtime, size) so an edit is seen
_PARSED: dict[Path, tuple[tuple[int, int], _ModuleInfo]] = {}


def _parsed(path: Path) -> _ModuleInfo:
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _PARSED.get(path)
    if hit is None or hit[0] != stamp:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError):
            tree = None             # still a dependency; its imports are unknown
        hit = _PARSED[path] = (stamp, _ModuleInfo(tree))
    return hit[1]


@lru_cache(maxsize=None)
def _module_file(src: Path, name: str) -> Path | None:
    base = src.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand.resolve()
    return None


@lru_cache(maxsize=None)
def _resolved(path: Path) -> Path:
    return path.resolve()


@lru_cache(maxsize=None)
def _module_name(src: Path, path: Path) -> str | None:
    try:
        rel = _resolved(path).relative_to(src)
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or None


class _Walker:
    def __init__(self, src_root: Path, package: str = PACKAGE, skip_trees: tuple[str, ...] = ()):
        self.src = Path(src_root).resolve()
        self.package = package
        self.files: set[Path] = set()
        self._used: dict[Path, set[str]] = {}     # names of each file already followed
        #: folders a computed import's package expansion leaves out (benchmark kinds a rule does not
        #: use); explicit imports of their modules are still followed
        self.skip = tuple(Path(t).resolve() for t in skip_trees)

    # -- module name <-> file -----------------------------------------------------------------
    def module_file(self, name: str) -> Path | None:
        if name != self.package and not name.startswith(self.package + "."):
            return None
        return _module_file(self.src, name)

    def module_name(self, path: Path) -> str | None:
        return _module_name(self.src, path)

    def package_of(self, path: Path) -> str | None:
        name = self.module_name(path)
        if name is None:
            return None
        return name if path.name == "__init__.py" else name.rpartition(".")[0]

    def info(self, path: Path) -> _ModuleInfo:
        return _parsed(path)

    # -- the walk -------------------------------------------------------------------------------
    def add_module(self, name: str, names: set[str] | str = ALL) -> None:
        """A module (the given top-level names of it, or all) and every package __init__ above."""
        parts = name.split(".")
        for i in range(1, len(parts)):
            f = self.module_file(".".join(parts[:i]))
            if f is not None:
                self.visit(f, set())
        f = self.module_file(name)
        if f is not None:
            self.visit(f, names)

    def add_package_tree(self, name: str) -> None:
        f = self.module_file(name)
        if f is None:
            return
        self.add_module(name)
        if f.name == "__init__.py":
            for sub in sorted(f.parent.rglob("*.py")):
                sub = _resolved(sub)
                if not any(sub.is_relative_to(t) for t in self.skip):
                    self.visit(sub, ALL)

    def visit(self, path: Path, names: set[str] | str = ALL) -> None:
        path = _resolved(path)
        if path not in self._used and not path.is_file():
            return
        self.files.add(path)
        info = self.info(path)
        want = set(info.defs) if names == ALL else set(names)
        used = self._used.get(path)
        if used is not None and want <= used:
            return
        self._used[path] = (used or set()) | want
        new = want - (used or set())
        nodes = info.closure(new) if used is None else [d for d in info.closure(new)
                                                        if d not in info.module_nodes]
        here = self.package_of(path) if self.module_name(path) is not None else None
        for top in nodes:
            for node in info.events(top):
                self.node(node, path, here)

    def node(self, node: ast.AST, path: Path, here: str | None) -> None:
        if isinstance(node, ast.Import):
            for a in node.names:
                self.add_name(a.name, path, ALL)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if here is None:
                    return
                parts = here.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)]) if node.level > 1 else here
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            names = {a.name for a in node.names}
            subs = {n for n in names if self.module_file(f"{mod}.{n}") is not None}
            self.add_name(mod, path, ALL if "*" in names else names - subs)
            for n in sorted(subs):
                self.add_module(f"{mod}.{n}")
        elif isinstance(node, ast.Call):
            self.dynamic(node, here, path)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            v = node.value
            if v.startswith(self.package + ".") and v.replace(".", "").replace("_", "").isalnum() \
                    and self.module_file(v) is not None:
                self.add_module(v)

    def add_name(self, name: str, importer: Path, names: set[str] | str = ALL) -> None:
        if not name:
            return
        if name == self.package or name.startswith(self.package + "."):
            self.add_module(name, names)
        elif self.module_name(importer) is None:   # a script's sibling helper (scripts/_x.py)
            sib = importer.parent / (name.split(".")[0] + ".py")
            if sib.is_file():
                self.visit(sib, ALL)

    def dynamic(self, call: ast.Call, here: str | None, path: Path | None = None) -> None:
        f = call.func
        fname = f.attr if isinstance(f, ast.Attribute) else (f.id if isinstance(f, ast.Name) else "")
        if fname not in ("import_module", "__import__") or not call.args:
            return
        relative_pkg = here if (len(call.args) > 1 or any(k.arg == "package" for k in call.keywords)) else None
        todo, exprs = [call.args[0]], []
        while todo:                     # `a if c else b` may import either
            e = todo.pop()
            if isinstance(e, ast.IfExp):
                todo += [e.body, e.orelse]
            else:
                exprs.append(e)
        for arg in exprs:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                name = arg.value
                if name.startswith(".") and relative_pkg:
                    name = relative_pkg + name if name != "." else relative_pkg
                self.add_name(name, Path("/nonexistent/x.py"))
                continue
            prefix = self._prefix(arg, here, path)
            if prefix is None:
                continue
            if prefix.startswith(".") and relative_pkg:
                prefix = relative_pkg + prefix
            if prefix.startswith(self.package):
                self.add_package_tree(prefix.rstrip(".") if prefix.endswith(".") else prefix.rpartition(".")[0])

    def _prefix(self, arg: ast.AST, here: str | None, path: Path | None) -> str | None:
        """The statically known start of a computed module name (f-string or `+`), with
        ``__name__``/``__package__`` resolved; None when it starts with something unknown."""
        parts: list[ast.AST] = []
        if isinstance(arg, ast.JoinedStr):
            parts = list(arg.values)
        elif isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Add):
            stack = [arg]
            while stack:
                e = stack.pop()
                if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
                    stack += [e.right, e.left]
                else:
                    parts.append(e)
        else:
            return None
        out = ""
        for p in parts:
            v = p.value if isinstance(p, ast.FormattedValue) else p
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                out += v.value
            elif isinstance(v, ast.Name) and v.id == "__package__" and here:
                out += here
            elif isinstance(v, ast.Name) and v.id == "__name__" and path is not None and self.module_name(path):
                out += self.module_name(path)
            else:
                break
        return out or None


def _code_files(script: str, src_root: str, package: str, skip_trees: tuple[str, ...]) -> tuple[str, ...]:
    w = _Walker(Path(src_root), package, skip_trees)
    w.visit(Path(script), ALL)
    return tuple(sorted(str(f) for f in w.files))


def code_files(script: str | Path, src_root: str | Path, package: str = PACKAGE,
               skip_trees: tuple[str | Path, ...] = ()) -> list[Path]:
    """The script itself, its helper modules and every package file it reaches (sorted).
    ``skip_trees``: folders left out when a computed import takes a whole package (the benchmark
    kinds a rule does not use)."""
    return [Path(f) for f in _code_files(str(Path(script).resolve()), str(Path(src_root).resolve()), package,
                                         tuple(sorted(str(t) for t in skip_trees)))]


def code_hash(script: str | Path, src_root: str | Path, package: str = PACKAGE,
              skip_trees: tuple[str | Path, ...] = ()) -> str:
    """A hash of the contents of `code_files` (paths relative to their roots, so a checkout
    elsewhere hashes the same)."""
    src = Path(src_root).resolve()
    h = hashlib.sha256()
    for f in code_files(script, src_root, package, skip_trees):
        try:
            rel = f.relative_to(src).as_posix()
        except ValueError:
            rel = f.name
        h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def tree_stamp(*roots: str | Path) -> str:
    """A hash of the path, size and mtime of every .py file under ``roots``: unchanged, so are the
    code hashes computed from them (``cached_code_hashes``)."""
    h = hashlib.sha256()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                if f.endswith(".py"):
                    st = os.stat(os.path.join(dirpath, f))
                    h.update(f"{dirpath}/{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cached_code_hashes(jobs: dict[str, tuple[str | Path, tuple]], src_root: str | Path, roots: list[str | Path],
                       store: str | Path) -> dict[str, str]:
    """``code_hash`` for each {name: (script, skip_trees)}, reusing the hashes ``store`` kept from the
    last call while no .py file under ``roots`` changed (a no-op rerun parses nothing)."""
    import json

    stamp = tree_stamp(*roots)
    key = hashlib.sha256(json.dumps({n: [str(s), sorted(map(str, k))] for n, (s, k) in sorted(jobs.items())},
                                    sort_keys=True).encode()).hexdigest()
    path = Path(store)
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        if kept.get("stamp") == stamp and kept.get("key") == key:
            return kept["hashes"]
    except (OSError, ValueError, KeyError):
        pass
    hashes = {n: code_hash(s, src_root, skip_trees=k) for n, (s, k) in jobs.items()}
    try:
        from ..io import atomic_write_text

        atomic_write_text(path, json.dumps({"stamp": stamp, "key": key, "hashes": hashes}))
    except OSError:   # a read-only folder: the hashes are still right, only not kept
        pass
    return hashes
