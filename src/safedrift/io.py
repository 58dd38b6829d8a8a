"""Small file helpers: every output is written to a temporary file and renamed, so a killed
job never leaves a half-written file that a later run would trust. Readers fail with a
DataError "file:line: what is wrong; what to do"."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import yaml

from safedrift.errors import DataError

_UMASK = os.umask(0)  # read the umask (the only way) and put it back
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are shared like any other file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path):
    with opened(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix the file, or delete it and rerun "
                        "snakemake") from None


def write_jsonl(path, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def opened(path, **kwargs):
    """open(path), or a DataError naming the file if there is none."""
    try:
        return open(path, **kwargs)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path, or rerun snakemake to build it") from None


def json_line(path, n: int, line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{n}: not valid JSON ({e.msg}); fix or remove this line") from None


def read_jsonl(path) -> list[dict]:
    """Rows of a JSONL file; a malformed line fails with file:line."""
    with opened(path) as f:
        return [json_line(path, n, line) for n, line in enumerate(f, 1) if line.strip()]


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, except that a key given twice in one mapping is an error, not the last
    value silently winning. Keys merged in with `<<: *anchor` may still be overridden."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first[key]})", key_node.start_mark)
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def yaml_error(path, e: yaml.YAMLError, line: int | None = None) -> str:
    """'file:line: what is wrong' for a YAML error (a duplicate key or a syntax error); `line` where
    the error has no position."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = mark.line + 1 if mark else line
    where = f"{path}:{line}" if line else str(path)
    problem = getattr(e, "problem", None) or str(e)
    if problem.startswith("duplicate key"):
        return f"{where}: {problem}"
    return f"{where}: not valid YAML ({problem})"


def canonical_json(obj) -> str:
    """One string per value, independent of key order: what Snakemake params compare."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
