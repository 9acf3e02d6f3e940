"""rule import_gguf: a GGUF checkpoint -> a safetensors model folder (sha256 checked and recorded)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.models.gguf import import_gguf, resolve_gguf
from doctune.workflow.pipeline import run

sm = snakemake  # noqa: F821
gguf, key = dict(sm.params.gguf), sm.params.key


def body():
    # the file found when the workflow was parsed (its rule input), else look again: the error names the key
    source = sm.input.gguf[0] if len(sm.input.gguf) else resolve_gguf(gguf, key)
    return import_gguf(source, sm.output[0], dtype=sm.params.dtype, expected_sha256=gguf.get("sha256"),
                       package=gguf.get("package"), key=key)


run(sm, body, record_result=True)
