"""An auditable provenance trail: one JSON sidecar per output.

For an output ``results/<rel>`` the sidecar is ``results/provenance/<rel>.json`` and records the
rule, the sha256 of the output and of every input (files or directories), the config slice the
rule depends on (secrets redacted) and its hash, package versions and the git commit of the code.
Environment variables are never read into a record. ``trace`` follows the inputs' own sidecars
back to the first step and reports, link by link, whether each recorded hash still matches.
"""
from __future__ import annotations

import datetime as _dt
import functools
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, canonical_json, read_json, sha256_path

PACKAGES = ["doctune", "torch", "transformers", "peft", "accelerate", "lm_eval", "google-genai", "gguf",
            "scipy", "numpy", "pandas", "snakemake", "matplotlib"]
REDACTED = "<redacted>"
_SECRET_SUBSTRINGS = ("secret", "password", "passwd", "credential", "apikey", "api_key")
_SECRET_WORDS = {"key", "keys", "token", "auth", "bearer"}


def is_secret_key(name: str) -> bool:
    """True for config keys that may hold a secret: containing secret/password/credential/api_key,
    or with a word 'key' / 'token' / 'auth' (``api_key``, ``hf_token``, ``accessToken``).
    Counts such as ``max_new_tokens`` and paths such as ``tokenizer`` are not secrets."""
    low = name.lower()
    if any(s in low for s in _SECRET_SUBSTRINGS):
        return True
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    return any(w in _SECRET_WORDS for w in re.split(r"[^a-z0-9]+", words))


def redact(obj: Any) -> Any:
    """A copy of obj with the values of secret-looking keys replaced (numbers and booleans kept:
    they are settings, not secrets)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if is_secret_key(str(k)) and not (v is None or isinstance(v, (bool, int, float))):
                out[k] = REDACTED
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    return obj


def config_hash(config_slice: Any) -> str:
    """sha256 of the canonical JSON of the redacted slice (so it can be recomputed from the
    record, and never depends on a secret)."""
    import hashlib

    return hashlib.sha256(canonical_json(redact(config_slice)).encode("utf-8")).hexdigest()


def package_versions() -> dict[str, str | None]:
    import platform

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            alt = name.replace("_", "-") if "_" in name else name.replace("-", "_")
            try:
                out[name] = metadata.version(alt)
            except metadata.PackageNotFoundError:
                out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def git_info() -> dict[str, Any]:
    """Commit and dirty flag of the repository holding this package's source (None if none)."""
    root = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()

    try:
        top = git("rev-parse", "--show-toplevel")
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "repo": None}
    return {"commit": commit, "dirty": dirty, "repo": Path(top).name}


def _hash_or_none(path: str) -> str | None:
    return sha256_path(path) if Path(path).exists() else None


def record(config_slice: dict, inputs: list[str], rule: str) -> dict:
    """Provenance of one step: rule, config slice hash, input sha256s (None for an input that did
    not exist), package versions, git commit, time. No environment variables, no secrets."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    return {
        "rule": rule,
        "inputs": {str(p): _hash_or_none(str(p)) for p in inputs},
        "config_hash": config_hash(config_slice),
        "config_slice": redact(config_slice),
        "versions": package_versions(),
        "git": dict(git_info()),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def sidecar_path(output: str) -> Path:
    """results/<rel> -> results/provenance/<rel>.json (the last 'results' component of the path
    counts); an output outside any 'results' folder gets <its folder>/provenance/<name>.json."""
    p = Path(str(output).rstrip("/"))
    parts = p.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "results" and i < len(parts) - 1:
            rel = Path(*parts[i + 1:])
            if rel.parts[0] == "provenance":
                raise ValueError(f"{output} is itself a provenance record")
            return Path(*parts[: i + 1]) / "provenance" / (str(rel) + ".json")
    return p.parent / "provenance" / (p.name + ".json")


def write_sidecar(output: str, inputs: list[str], config_slice: dict, rule: str, extra: dict | None = None) -> str:
    """Write the provenance sidecar of an existing output (file or directory); returns its path.
    `extra` adds keys the step itself found (redacted like the config slice)."""
    if not Path(output).exists():
        raise FileNotFoundError(f"provenance: output {output} does not exist")
    rec = record(config_slice, inputs, rule)
    doc = {"output": str(output).rstrip("/"), "output_sha256": sha256_path(output), **rec,
           **redact({k: v for k, v in (extra or {}).items() if k not in rec and k not in ("output", "output_sha256")})}
    dest = sidecar_path(output)
    atomic_write_json(dest, doc)
    return str(dest)


# ----------------------------------------------------------------------------- trace
def _root_of(path: Path) -> Path:
    """The directory that paths in records are relative to: the parent of 'results'."""
    parts = path.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "results":
            return Path(*parts[:i]) if i else Path(".")
    return Path(".")


def trace(path: str, root: str | None = None, max_depth: int | None = None) -> dict:
    """The provenance tree of a file: {"path", "status", "recorded_sha256", "current_sha256",
    "rule", "record", "inputs": [subtrees]}. Statuses: current, stale (changed since recorded),
    missing, no hash recorded (an input that did not exist when recorded), no record (the traced
    file itself has no sidecar); "record" is the sidecar's path or None for a source file.

    Each file's own inputs are expanded once, where it is first met (depth first, in record
    order), and numbered ("id"); a later link to the same file keeps its own status (its
    recorded hash may differ) and has "ref": that id instead of repeating the subtree. Below
    `max_depth` links the inputs are not followed; "not_shown" counts them."""
    p = Path(path)
    base = Path(root) if root is not None else _root_of(p.absolute())
    hashes: dict[str, str | None] = {}
    expanded: dict[str, int] = {}  # file -> id of the node that shows its inputs

    def resolve(x: str) -> Path:
        q = Path(x)
        return q if q.is_absolute() else base / q

    def status(actual: Path, recorded: str | None) -> tuple[str, str | None]:
        key = str(actual)
        if key not in hashes:
            hashes[key] = sha256_path(actual) if actual.exists() else None
        current = hashes[key]
        if current is None:
            return "missing", None
        if recorded is None:
            return "no hash recorded", current
        return ("current" if current == recorded else "stale"), current

    def node(display: str, actual: Path, recorded: str | None, depth: int, top: bool = False) -> dict:
        side = sidecar_path(str(actual))
        n: dict[str, Any] = {"path": display, "record": None, "rule": None, "inputs": []}
        if side.exists():
            doc = read_json(side)
            n["record"] = str(side)
            n["rule"] = doc.get("rule")
            n["config_hash"] = doc.get("config_hash")
            own = doc.get("output_sha256")
            if recorded is None:
                recorded = own
            n["status"], n["current_sha256"] = status(actual, recorded)
            n["recorded_sha256"] = recorded
            if own is not None and recorded is not None and own != recorded:
                n["note"] = "the input was recorded with a different version than its own record"
            key = str(actual.resolve()) if actual.exists() else str(actual)
            inputs = doc.get("inputs") or {}
            if key in expanded:
                n["ref"] = expanded[key]
                return n
            if max_depth is not None and depth >= max_depth:
                if inputs:
                    n["not_shown"] = len(inputs)
                return n
            n["id"] = expanded[key] = len(expanded) + 1
            for inp, h in inputs.items():
                n["inputs"].append(node(inp, resolve(inp), h, depth + 1))
        else:
            n["status"], n["current_sha256"] = status(actual, recorded)
            n["recorded_sha256"] = recorded
            if top and n["status"] != "missing":
                n["status"] = "no record"
        return n

    return node(str(path), p, None, 0, top=True)


def iter_links(tree: dict, depth: int = 0):
    yield depth, tree
    for child in tree["inputs"]:
        yield from iter_links(child, depth + 1)


def format_trace(tree: dict) -> str:
    """The tree as indented text: one entry per link; a file whose inputs were already shown
    gets one line pointing to its number (#N) instead of its subtree again."""
    def short(h: str | None) -> str:
        return h[:12] if h else "-"

    lines = []
    for depth, n in iter_links(tree):
        ind = "  " * depth
        rule = f"rule {n['rule']}" if n["rule"] else "no record (source)"
        num = f"  #{n['id']}" if n.get("id") and n["inputs"] else ""
        head = f"{ind}{'<- ' if depth else ''}{n['path']}  [{n['status']}]  {rule}{num}"
        if n.get("ref"):
            lines.append(f"{head}  (inputs shown above at #{n['ref']})")
            if n["status"] != "current":
                lines.append(f"{ind}   sha256 recorded {short(n.get('recorded_sha256'))}, "
                             f"now {short(n.get('current_sha256'))}")
            continue
        lines.append(head)
        h = f"{ind}   sha256 recorded {short(n.get('recorded_sha256'))}"
        if n.get("current_sha256") != n.get("recorded_sha256"):
            h += f", now {short(n.get('current_sha256'))}"
        if n.get("config_hash"):
            h += f"; config {short(n['config_hash'])}"
        lines.append(h)
        if n.get("not_shown"):
            lines.append(f"{ind}   ({n['not_shown']} input(s) below the --depth limit not shown)")
        if n.get("note"):
            lines.append(f"{ind}   note: {n['note']}")
    links = [n for _, n in iter_links(tree)]
    bad = [n for n in links if n["status"] != "current"]
    files = len({n["path"] for n in links})
    lines.append(f"{len(links)} link(s) to {files} file(s): " + (
        "all links current (each file's sha256 equals the one recorded)" if not bad else
        f"{len(bad)} link(s) not current: " + ", ".join(f"{n['path']} ({n['status']})" for n in bad)
        + "\n(stale = the file changed after the step that used it was recorded; "
          "rerun the pipeline to bring it up to date)"))
    return "\n".join(lines)
