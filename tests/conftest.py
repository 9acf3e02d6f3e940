"""Shared fixtures. Everything runs offline on the CPU."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Test this checkout's package (also from a git worktree that shares another checkout's venv),
# in this process and in the subprocesses the tests start.
sys.path.insert(0, str(REPO / "src"))
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
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
    """use_backend(b): every doctune.llm.base.make_backend call returns the test backend b."""
    import doctune.llm.base as base

    def install(backend):
        monkeypatch.setattr(base, "make_backend", lambda cfg, **kw: backend)
        return backend
    return install
