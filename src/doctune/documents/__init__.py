"""Synthetic documents: the template grid (specs), generation with validation and regeneration."""
from .corpus import CorpusError, load_corpus_def, load_grid
from .generate import generate_documents
from .specs import make_specs, write_specs

__all__ = ["write_specs", "generate_documents", "make_specs", "load_corpus_def", "load_grid", "CorpusError"]
