"""Rendering the judges' prompt templates (``string.Template`` syntax). Each judged kind keeps its
templates in its own folder (``kinds/NAME/prompts/``); a benchmark's ``judge_prompt`` file replaces
its kind's template (``override_template``)."""
from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from ..io import DataError

def override_template(path: str) -> string.Template:
    """A benchmark's ``judge_prompt`` file (a template that replaces its kind's own)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"judge prompt file {p} does not exist (benchmark key judge_prompt)")
    return string.Template(p.read_text(encoding="utf-8"))


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
