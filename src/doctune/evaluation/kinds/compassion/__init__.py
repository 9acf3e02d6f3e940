"""Human compassion: the project's own question set (``resources/benchmarks/human_compassion``),
in the AHB format and scored exactly as the AHB (see ``ahb.py``). There is no reference
implementation, so the reference-structured judge prompt uses our own wording unless
``prompt_source: inspect_evals`` asks for the ANIMA prompt text."""
from __future__ import annotations

from ..ahb import AHBKind


class CompassionKind(AHBKind):
    name = "compassion"
    description = "human compassion questions in the AHB format, judged like the AHB"
    display_name = "human compassion"

    def units(self, data, completions, bench_cfg):
        cfg = dict(bench_cfg)
        if (cfg.get("prompt_source") or "auto") == "auto":
            cfg["prompt_source"] = "builtin"
        return super().units(data, completions, cfg)


KIND = CompassionKind()
