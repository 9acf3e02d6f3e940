"""A stand-in for the `snakemake` object a rule's script sees (what doctune.workflow.pipeline reads
of it), for tests that run a script's body through the harness without Snakemake."""
from __future__ import annotations

from pathlib import Path


class Named(list):
    """A list with named entries as attributes (snakemake.input, .output, .params...)."""

    def __init__(self, items=(), **named):
        super().__init__(items)
        self.__dict__.update(named)

    def items(self):
        return list(self.__dict__.items())


class FakeSM:
    def __init__(self, rule: str, inputs, outputs, tmp: Path):
        self.rule = rule
        self.input = Named(map(str, inputs))
        self.output = Named(map(str, outputs))
        self.log = Named([str(Path(tmp) / "logs" / f"{rule}.log")])
        self.params = Named()
