"""Helpers shared by the benchmark kinds: metric records, means, item order, HF datasets, JSON in
model replies."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from ...io import DataError, DataUnavailable
from ..bootstrap import bootstrap_ci, bootstrap_indices, percentile_ci  # noqa: F401 (re-exported)


class BenchmarkUnavailable(DataUnavailable):
    """The benchmark data could not be loaded (e.g. a HuggingFace dataset while offline)."""


def mean(xs: Iterable[float | None]) -> float | None:
    v = [float(x) for x in xs if x is not None]
    return sum(v) / len(v) if v else None


def metric(value: float | None, ci: tuple[float | None, float | None] = (None, None), n: int = 0,
           n_missing: int = 0, **extra: Any) -> dict:
    """One metric record; a value that could not be computed is None (never 0), with no CI."""
    return {"value": value, "ci_low": ci[0] if value is not None else None,
            "ci_high": ci[1] if value is not None else None, "n": int(n), "n_missing": int(n_missing), **extra}


def mean_metric(items: dict[str, float | None], n_bootstrap: int, seed: int) -> dict:
    vals = [v for v in items.values() if v is not None]
    return metric(mean(vals), bootstrap_ci(vals, n_bootstrap, seed), len(vals), len(items) - len(vals))


def item_sort(keys: Iterable[str]) -> list[str]:
    """Item ids in numeric order where they are numbers, then the others by name."""
    return sorted(keys, key=lambda k: (0, int(k), "") if str(k).lstrip("-").isdigit() else (1, 0, str(k)))


def load_hf_rows(dataset: str, revision: str | None, split: str, config: str | None = None, *,
                 data_dir: str | None = None, data_files: Any = None) -> list[dict]:
    """Rows of a HuggingFace dataset. When it cannot be had right now (offline and not cached,
    gated, hub unreachable: doctune.workflow.hub.hub_problem) BenchmarkUnavailable, and the
    benchmark is reported missing; any other failure (a wrong split or config name, data files that
    are not there, a dataset the hub does not have) a DatasetError, and the job fails. Both name
    the dataset and how it was asked for."""
    import datasets

    from ...workflow.hub import dataset_failure

    kw: dict[str, Any] = {"revision": revision, "split": split}
    if data_dir:
        kw["data_dir"] = data_dir
    if data_files:
        kw["data_files"] = data_files
    try:
        ds = datasets.load_dataset(dataset, config, **kw)
    except Exception as exc:  # noqa: BLE001 - sorted by dataset_failure
        what = (f"HuggingFace dataset {dataset!r} (config={config!r}, split={split!r}, revision={revision!r}"
                + (f", data_dir={data_dir!r}" if data_dir else "")
                + (f", data_files={data_files!r}" if data_files else "") + ")")
        raise dataset_failure(exc, what, BenchmarkUnavailable,
                              ". Offline, give a local copy with source.path instead.") from exc
    return [dict(r) for r in ds]


def cache_dir() -> Path:
    """doctune's own cache of things fetched or computed once per machine: ``$DOCTUNE_CACHE``
    (default ``$XDG_CACHE_HOME/doctune``, i.e. ``~/.cache/doctune``)."""
    import os

    return Path(os.environ.get("DOCTUNE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "doctune")


def fetch_url(url: str, timeout: float = 60.0) -> "Path":
    """A local copy of a file at an http(s) URL, downloaded once into ``$DOCTUNE_CACHE/urls`` (default
    ``~/.cache/doctune/urls``, atomically; later calls reuse it). BenchmarkUnavailable when it cannot
    be had (offline, 404, ...)."""
    import hashlib
    import os
    import urllib.request

    base = cache_dir() / "urls"
    name = url.rstrip("/").rsplit("/", 1)[-1] or "download"
    dest = base / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"
    if dest.is_file():
        return dest
    base.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, tmp.open("wb") as fh:
            while chunk := resp.read(1 << 20):
                fh.write(chunk)
        os.replace(tmp, dest)
    except Exception as exc:  # noqa: BLE001 - offline, DNS, HTTP errors
        tmp.unlink(missing_ok=True)
        raise BenchmarkUnavailable(f"could not download {url}: {type(exc).__name__}: {exc}. Offline, download it "
                                   f"once and give the local file as source.path.") from exc
    return dest


def scoring_backend(spec: dict, bench_cfg: dict, backends: dict | None = None):
    """A local scoring backend (registry.SCORER) for answer log-probabilities of one model (the kinds of stage "logprob"):
    ``backends`` ({settings: backend}), shared by the benchmarks of one job, keeps it loaded for
    the next benchmark with the same batch size, device and dtype (one model load per job)."""
    from ...llm.registry import SCORER, make_backend

    cfg = {"backend": SCORER, "spec": spec, "batch_size": int(bench_cfg.get("batch_size") or 16),
           "device": bench_cfg.get("device"), "dtype": bench_cfg.get("dtype")}
    key = (cfg["batch_size"], str(cfg["device"]), str(cfg["dtype"]))
    backend = (backends or {}).get(key) or make_backend(cfg)
    if backends is not None:
        backends[key] = backend
    return backend


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(text: str | None) -> Any:
    """The JSON object in a reply (plain, fenced or embedded in prose); None when there is none."""
    if not text or not text.strip():
        return None
    candidates = [text.strip()] + [m.strip() for m in _FENCE.findall(text)]
    i, j = text.find("{"), text.rfind("}")
    if 0 <= i < j:
        candidates.append(text[i:j + 1])
    for c in candidates:
        try:
            return json.loads(c)
        except (json.JSONDecodeError, ValueError):
            continue
    return None


def as_int(v: Any, allowed: Iterable[int]) -> int | None:
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, str) and v.strip().lstrip("+").isdigit():
        v = int(v.strip())
    return v if isinstance(v, int) and v in set(allowed) else None


_PLACEHOLDER = re.compile(r"\{\{([^}]+)\}\}")


def fill_placeholders(text: str, combo: dict[str, str], leave_names: bool = False) -> str:
    """Replace each ``{{key}}`` of ``combo`` by its value (exact keys, as the AHB reference does);
    with ``leave_names`` any placeholder left becomes its own name (text for people)."""
    for k, v in combo.items():
        text = text.replace("{{" + k + "}}", v)
    return _PLACEHOLDER.sub(lambda m: m.group(1).strip(), text) if leave_names else text


PROMPT_SOURCES = ("auto", "inspect_evals", "builtin")


def resolve_prompt_source(bench_cfg: dict, reference_available: Callable[[], bool]) -> str:
    """A judged kind's ``prompt_source``: auto means the reference's own prompt when its package
    imports (``reference_available``), else our wording; asking for the reference without it is an error."""
    src = bench_cfg.get("prompt_source") or "auto"
    if src not in PROMPT_SOURCES:
        raise DataError(f"benchmark config key 'prompt_source': {src!r} is not one of {PROMPT_SOURCES}")
    if src == "auto":
        return "inspect_evals" if reference_available() else "builtin"
    if src == "inspect_evals" and not reference_available():
        raise DataError("benchmark config key 'prompt_source' is inspect_evals, but inspect_evals/inspect_ai "
                        "cannot be imported: pip install inspect-ai==0.3.285 inspect-evals==0.26.0")
    return src
