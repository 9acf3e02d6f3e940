"""File helpers shared by every stage: atomic writes, JSONL with line-numbered errors,
append-only caches that survive a kill at any moment, and stable hashing."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


class DataError(ValueError):
    """Bad input data; the message names the file and line."""


class DataUnavailable(RuntimeError):
    """A data set cannot be had right now: the hub is unreachable, the dataset is gated, or it is
    not cached while offline (doctune.workflow.hub.hub_problem says which). Not a user error:
    the rule writes a "missing" marker and what needs the data is reported missing in the summary
    while the rest of the run goes on (see doctune.workflow.pipeline.run)."""


class DatasetError(DataError):
    """A data set that cannot be read as the config asks (a wrong split or config name, a bad
    column, a file that is not there, a repository the hub does not have): the user's to fix, so
    the job fails, with one line naming the data set (doctune.workflow.pipeline.run)."""

    user_error = True   # doctune.workflow.pipeline.run prints one line, no traceback


MISSING_FLAG = "missing_data"


def write_missing_marker(path: str | os.PathLike, reason: str) -> None:
    """Stand-in for an output that could not be made because its data is unavailable: a JSONL
    file gets one row, any other file one JSON object, {"status": "missing", "reason": ...}."""
    marker = {"status": "missing", "reason": reason, MISSING_FLAG: True}
    p = Path(path)
    if p.suffix == ".jsonl":
        atomic_write_text(p, json.dumps(marker, ensure_ascii=False) + "\n")
    else:
        atomic_write_json(p, marker)


def missing_marker(path: str | os.PathLike) -> str | None:
    """The reason recorded in a missing-data marker file, or None for a real file (only the first
    line is read)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with p.open("r", encoding="utf-8") as fh:
            head = fh.readline() if p.suffix == ".jsonl" else fh.read(4096)
        obj = json.loads(head)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(obj, dict) and obj.get(MISSING_FLAG) is True and obj.get("status") == "missing":
        return str(obj.get("reason") or "data unavailable")
    return None


def ensure_parent(path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text so that readers see either the old file or the whole new one."""
    p = ensure_parent(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Atomically write rows as JSON Lines; returns the row count."""
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def iter_jsonl_numbered(path: str | os.PathLike, *, tolerate_torn_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, JSON object) for each non-empty line of a JSONL file; a bad line raises
    DataError naming file:line.

    With tolerate_torn_tail, an unterminated, unparseable last line (a write cut off by a kill)
    is skipped instead of raising."""
    p = Path(path)
    with p.open("r", encoding="utf-8") as fh:
        lines = fh.readlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if tolerate_torn_tail and i == len(lines) and not line.endswith("\n"):
                return
            raise DataError(f"{p}:{i}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{p}:{i}: expected a JSON object, got {type(obj).__name__}")
        yield i, obj


def iter_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = False) -> Iterator[dict]:
    """Yield JSON objects from a JSONL file (``iter_jsonl_numbered`` without the line numbers)."""
    for _, obj in iter_jsonl_numbered(path, tolerate_torn_tail=tolerate_torn_tail):
        yield obj


def read_jsonl(path: str | os.PathLike, **kw: Any) -> list[dict]:
    return list(iter_jsonl(path, **kw))


def read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}:{exc.lineno}: invalid JSON ({exc.msg})") from None


class AppendCache:
    """A key -> record store kept as an append-only JSONL file.

    Each `put` appends one line and fsyncs before returning, so a record that `put` returned
    for is never lost, and a process killed mid-write leaves at most one torn last line, which
    is ignored (and overwritten) on the next open. Later records for a key win."""

    def __init__(self, path: str | os.PathLike):
        self.path = ensure_parent(path)
        self._data: dict[str, dict] = {}
        if self.path.exists():
            raw = self.path.read_bytes()
            good_end = raw.rfind(b"\n") + 1
            if good_end < len(raw):  # torn tail from a kill: drop it
                with self.path.open("r+b") as fh:
                    fh.truncate(good_end)
            for rec in iter_jsonl(self.path):
                self._data[rec["key"]] = rec
        self._fh = self.path.open("a", encoding="utf-8")

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> dict | None:
        return self._data.get(key)

    def put(self, key: str, record: dict) -> None:
        rec = dict(record)
        rec["key"] = key
        self._fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._data[key] = rec

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "AppendCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-serialisable object, independent of dict order."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        rel = f.relative_to(p).as_posix()
        if "/checkpoints/" in f"/{rel}" or rel.startswith("."):
            continue
        h.update(rel.encode())
        h.update(b"\0")
        h.update(sha256_file(f).encode())
    return h.hexdigest()
