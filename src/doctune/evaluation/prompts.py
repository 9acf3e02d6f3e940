"""Prompt templates of the judges (``resources/prompts/*.txt``, ``string.Template`` syntax)."""
from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from ..io import DataError

_REPO_RESOURCES = Path(__file__).resolve().parents[3] / "resources"


def prompt_file(name: str, override: str | None = None, resources_dir: str | None = None) -> Path:
    if override:
        p = Path(override)
        if not p.is_file():
            raise DataError(f"judge prompt file {p} does not exist")
        return p
    for base in (Path(resources_dir) if resources_dir else None, Path("resources"), _REPO_RESOURCES):
        if base is not None and (base / "prompts" / name).is_file():
            return base / "prompts" / name
    raise DataError(f"judge prompt template prompts/{name} not found (looked in resources_dir, "
                    f"./resources and {_REPO_RESOURCES})")


def load_template(name: str, override: str | None = None, resources_dir: str | None = None) -> string.Template:
    return string.Template(prompt_file(name, override, resources_dir).read_text(encoding="utf-8"))


def render(template: string.Template, **values: Any) -> str:
    try:
        return template.substitute(**values)
    except KeyError as exc:
        raise DataError(f"judge prompt template needs a value for ${{{exc.args[0]}}}") from None


def language_note(language: str | None, translation: str | None) -> str:
    if language is None or str(language).strip().lower() in ("", "english", "en"):
        return ""
    note = (f"\nNote: the question and the answer may be written in {language}. Translate them into "
            f"English first, then judge the meaning of the translation.\n")
    if translation:
        note += f"An English translation of the question: {translation}\n"
    return note


def format_indicators(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return "\n".join(f"- {ln.lstrip('-* ').strip()}" for ln in lines) or "- (none listed)"
