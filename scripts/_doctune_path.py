"""Make the repository's src/ importable for the rule scripts (Snakemake puts scripts/ on
sys.path), ahead of any other installed doctune, so conda environments need only the
dependencies and a copy of the workflow always runs its own code."""
import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parents[1] / "src")
while _SRC in sys.path:
    sys.path.remove(_SRC)
sys.path.insert(0, _SRC)
