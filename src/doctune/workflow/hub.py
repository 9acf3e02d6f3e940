"""What a problem of the HuggingFace hub means: the one classification of hub problems.

``hub_problem(exc)`` sorts an exception (from huggingface_hub, or from ``datasets`` loading from the
hub) into the statuses preflight reports (``preflight.hub_status``): "gated", "offline" (not cached
while offline) and "unreachable" make a dataset unavailable right now (UNAVAILABLE: a preflight
warning, a `missing` marker in the job, and the rest of the run goes on); "not_found" is the
user's to fix (an error, a failed job); None is no hub problem at all (a wrong split or config
name, a bad column, a local file that is not there, a bug: the job fails).

``dataset_failure`` turns a loader's exception into DataUnavailable or DatasetError accordingly.
This module imports nothing of doctune at load time: the scripts' harness (pipeline.py) and the
loaders use it without reaching the rest of the package (doctune.workflow.codedeps)."""
from __future__ import annotations

import os

# The hub problems that make a dataset unavailable *right now*: a warning in preflight, a `missing`
# marker in a job (the rest of the run goes on). The other one, "not_found" (no such repository or
# revision), is the user's to fix: an error in preflight, a failed job.
UNAVAILABLE = ("offline", "gated", "unreachable")
GATED = "gated on the hub: accept its terms and log in (hf auth login) or set HF_TOKEN"
OFFLINE = "offline (HF_HUB_OFFLINE=1) and not in the local HuggingFace cache"
_HUB_DOWN = (408, 429, 500, 502, 503, 504)   # HTTP answers that say "not now"


def unreachable(exc: BaseException) -> str:
    return f"the hub cannot be reached ({type(exc).__name__}: {str(exc)[:200]})"


def _network_errors() -> tuple[type, ...]:
    out: list[type] = [ConnectionError, TimeoutError]   # OfflineModeIsEnabled is a ConnectionError
    for module, names in (("httpx", ("NetworkError", "TimeoutException")),
                          ("requests.exceptions", ("ConnectionError", "Timeout"))):
        try:
            mod = __import__(module, fromlist=list(names))
        except ImportError:
            continue
        out += [getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type)]
    return tuple(out)


def hub_problem(exc: BaseException, env: dict | None = None) -> tuple[str, str] | None:
    """What an error of the hub (or of `datasets` loading from it) means, as `preflight.hub_status` reports
    it: ("gated" | "not_found" | "offline" | "unreachable", detail), looking through the exceptions
    it was raised from; None when it is no hub problem (a wrong split or config name, a bad column,
    a local file that is not there, a bug).

    The one classification of hub problems: preflight's hub checks (`preflight.hub_status`), the
    dataset loaders (`dataset_failure`) and the jobs' missing data
    (doctune.workflow.pipeline.data_unavailable) all use it; only the statuses in UNAVAILABLE make
    a dataset missing."""
    try:
        from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                            OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)
    except ImportError:  # pragma: no cover - a pinned dependency
        return None
    try:
        from datasets.exceptions import DatasetNotFoundError
    except ImportError:  # pragma: no cover - a pinned dependency
        DatasetNotFoundError = RepositoryNotFoundError   # noqa: N806
    env = os.environ if env is None else env
    offline = any(str(env.get(n, "")).strip().lower() in ("1", "true", "yes", "on")
                  for n in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    network = _network_errors()
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e)
        # datasets turns the hub's answers into DatasetNotFoundError, sometimes dropping the cause
        if isinstance(e, GatedRepoError) or (isinstance(e, DatasetNotFoundError) and "gated" in text):
            return "gated", GATED
        if isinstance(e, RevisionNotFoundError) or (isinstance(e, DatasetNotFoundError)
                                                    and text.startswith("Revision")):
            return "not_found", "the hub has no such revision of it"
        if isinstance(e, (RepositoryNotFoundError, DatasetNotFoundError)):
            return "not_found", "the hub has no such repository (or it is private)"
        if isinstance(e, OfflineModeIsEnabled) or (isinstance(e, ConnectionError) and "OfflineModeIsEnabled" in text):
            return "offline", OFFLINE
        if isinstance(e, LocalEntryNotFoundError):   # not in the cache, and the hub was not asked or did not answer
            return ("offline", OFFLINE) if offline else ("unreachable", unreachable(e))
        if isinstance(e, HfHubHTTPError):
            code = getattr(getattr(e, "response", None), "status_code", None)
            if code in _HUB_DOWN:
                return "unreachable", f"the hub answered HTTP {code} ({text[:200]})"
        if isinstance(e, network):
            return ("offline", OFFLINE) if offline else ("unreachable", unreachable(e))
        e = e.__cause__ or e.__context__
    return None


def dataset_failure(exc: BaseException, what: str, unavailable: type | None = None, hint: str = "") -> Exception:
    """The exception a loader raises for a data set it could not load (`what` names it, e.g. the
    dataset id with its config, split and revision, or the config key): when `hub_problem` says
    it cannot be had right now, a DataUnavailable (or the subclass `unavailable`; `hint` is added
    to its message), which the job reports as missing; otherwise a DatasetError, which fails the
    job with one line. Raise it ``from exc``."""
    from ..io import DataUnavailable, DatasetError

    cause = " ".join(f"{type(exc).__name__}: {exc}".split())   # one line
    problem = hub_problem(exc)
    if problem and problem[0] in UNAVAILABLE:
        return (unavailable or DataUnavailable)(f"{what} is not available: {problem[1]} ({cause}){hint}")
    return DatasetError(f"{what} cannot be loaded: {cause}")
