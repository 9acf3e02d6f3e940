"""Make the repository's src/ importable for the rule scripts (Snakemake puts scripts/ on
sys.path), so conda environments need only the dependencies, not an installed doctune."""
import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parents[1] / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
