"""Helpers the Snakefiles call: source dependencies of a stage, canonical params.

Kept out of the .smk files so they are plain, tested Python.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path

from safedrift import cpu_pin
from safedrift.io import canonical_json

PACKAGE_DIR = Path(__file__).resolve().parent
SRC_DIR = PACKAGE_DIR.parent


def module_file(module: str) -> Path:
    """`safedrift.world.splits` -> src/safedrift/world/splits.py (or the package's __init__.py). A module
    outside the package (a config `type` given as a dotted module path) is found on sys.path; a
    namespace package, which has no file, gives a path that does not exist."""
    if module != "safedrift" and not module.startswith("safedrift."):
        spec = importlib.util.find_spec(module)
        return Path(spec.origin).resolve() if spec is not None and spec.has_location else SRC_DIR / "-"
    path = SRC_DIR.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _source_path(path: Path) -> str:
    """A source file as rules list it: relative to the workflow folder, absolute when outside it."""
    return str(path.relative_to(SRC_DIR.parent)) if path.is_relative_to(SRC_DIR.parent) else str(path)


@lru_cache(maxsize=None)
def _imports(module: str) -> tuple[str, ...]:
    """The safedrift modules `module` imports at top level or inside functions (static, via ast), and
    for a module outside the package (a dotted config type) also those of its own top-level package."""
    if not module_file(module).exists():  # a namespace package
        return ()
    tree = ast.parse(module_file(module).read_text())
    roots = tuple({"safedrift", module.split(".")[0]})
    found = set()
    package = module if module_file(module).name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in roots)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] not in roots:
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if module_file(candidate).exists() else base)
    return tuple(sorted(m for m in found if module_file(m).exists()))


@lru_cache(maxsize=None)
def source_closure(*modules: str) -> tuple[str, ...]:
    """Files of `modules` and of every safedrift module they import, transitively.

    Rules list these as inputs, so editing a stage's code reruns the rules that use it and
    nothing else. Registries import implementations lazily (by name), so a rule depends on
    the objective or defense it runs, not on all of them."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        # importing a.b.c also executes a/__init__ and a/b/__init__
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += list(_imports(m))
    return tuple(sorted(_source_path(module_file(m)) for m in seen if module_file(m).exists()))


def finetune_modules(objective_type: str, defense_type: str) -> tuple[str, ...]:
    """The modules a finetune.run job executes: the stage and the run's objective and defense (the
    registries import those by name, so a static walk from the stage alone would miss them)."""
    from safedrift.defenses import defense_module
    from safedrift.objectives import objective_module

    return ("safedrift.finetune.run", objective_module(objective_type), defense_module(defense_type))


def source_fingerprint(*modules: str) -> str:
    """sha256 over the path and bytes of every file in source_closure(*modules): the code, as the
    rule that runs `modules` sees it among its inputs."""
    h = hashlib.sha256()
    for path in source_closure(*modules):
        h.update(path.encode() + b"\0" + (SRC_DIR.parent / path).read_bytes() + b"\0")  # an absolute path stays so
    return h.hexdigest()


def params(obj) -> str:
    """Canonical JSON for a rule's `params:` (key order never triggers a rerun)."""
    return canonical_json(obj)


def prepare_job_environment(src) -> None:
    """Environment every job inherits from Snakemake: the library from this checkout (also inside
    conda envs, which do not install it), the interpreter Snakemake runs under first on PATH, quiet
    tokenizers (their thread pool would fight the jobs' own threads), and the CPU numerics pins
    (`cpu_pin`; before the zygote server imports torch, and inherited by SLURM and conda jobs)."""
    cpu_pin.apply(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
