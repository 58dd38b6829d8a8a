"""Stage `report.readme`: write the README's results blocks from the results (`snakemake docs`).

The README holds its numbers only between markers, one pair per block:

    <!-- safedrift:results:objectives:begin -->
    ...written by this stage...
    <!-- safedrift:results:objectives:end -->

Each `--block NAME=RENDERER:PATH` renders one block from a file of the results (RENDERERS says
how), the `provenance` block says which commit, config and machine wrote them, and the
`run_times` block (`--run-times LOGS`) how long the Snakemake runs of this config took and where
the job time went (report.run_times: Snakemake's own run logs and the rules' benchmark files).
Only the text between the markers of the blocks given is replaced; everything else, and blocks
not given, stay byte for byte. The README is rewritten atomically, and only if a block changed (a
second run with the same results leaves it untouched). A new block is a line in README_BLOCKS
(Snakefile) and its marker pair in the README.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path

import pandas as pd

from safedrift import cpu_pin
from safedrift.errors import SafedriftError
from safedrift.io import atomic_path, read_json
from safedrift.report import run_times
from safedrift.report.reference import LABELS
from safedrift.report.tables import to_markdown

MARKER = re.compile(r"^<!-- safedrift:results:(?P<name>[A-Za-z0-9_]+):(?P<edge>begin|end) -->$")
# Outputs of the docs target: a README or figure that differs from the commit does not make the code dirty.
OUTPUTS = ("README.md", "docs/figures")


def marker(name: str, edge: str) -> str:
    return f"<!-- safedrift:results:{name}:{edge} -->"


def regions(lines: list[str], where: str) -> dict[str, tuple[int, int]]:
    """Block name -> (index of its begin line, index of its end line). Raises on unbalanced markers."""
    found: dict[str, tuple[int, int]] = {}
    open_name, open_at = None, -1
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        name, edge = m["name"], m["edge"]
        if edge == "begin" and open_name is None and name not in found:
            open_name, open_at = name, i
        elif edge == "end" and name == open_name:
            found[name] = (open_at, i)
            open_name = None
        else:
            problem = ("a second block named " + name if name in found else
                       f"{edge} of {name} inside block {open_name}" if open_name else f"end of {name} without its begin")
            raise SafedriftError(f"{where}:{i + 1}: {problem}; each block is one begin/end marker pair, not nested")
    if open_name is not None:
        raise SafedriftError(f"{where}:{open_at + 1}: block {open_name} has no end marker ({marker(open_name, 'end')})")
    return found


def replace_blocks(text: str, blocks: dict[str, str], where: str = "README.md") -> str:
    """`text` with the lines between each block's markers replaced by its content (framed by blank lines)."""
    lines = text.split("\n")
    found = regions(lines, where)
    missing = sorted(set(blocks) - set(found))
    if missing:
        raise SafedriftError(f"{where} has no markers for block(s) {', '.join(missing)}: add "
                             f"{marker(missing[0], 'begin')} and {marker(missing[0], 'end')} where it goes")
    for name, (begin, end) in sorted(found.items(), key=lambda kv: -kv[1][0]):  # bottom up: indices stay valid
        if name in blocks:
            lines[begin + 1:end] = ["", *blocks[name].strip("\n").split("\n"), ""]
    return "\n".join(lines)


def write_readme(path: str | os.PathLike, blocks: dict[str, str]) -> bool:
    """Rewrite the blocks of the README at `path` in place; True if it changed."""
    path = Path(path)
    if not path.is_file():
        raise SafedriftError(f"{path}: no such file; the docs target rewrites the README of the checkout it runs in")
    old = path.read_text()
    new = replace_blocks(old, blocks, where=str(path))
    if new == old:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(new)
        os.chmod(tmp, path.stat().st_mode & 0o7777)  # a tracked file keeps its mode
    return True


# --------------------------------------------------------------------------- renderers

def markdown_file(path: str) -> str:
    """A table the pipeline already wrote as Markdown (tables/*.md: caption, blank line, table)."""
    return Path(path).read_text()


def reference_gates(path: str) -> str:
    """The reference card's quality gates (world.card) as a sentence and a table."""
    gates = read_json(path)["gates"]
    order = {g: i for i, g in enumerate(LABELS)}  # the figure's order (the card's JSON is sorted by name)
    rows = [{"gate": LABELS.get(g, g).replace("\n", " "), "rate": f"{100 * v['value']:.1f}%",
             "threshold": f"{v['op']} {100 * v['threshold']:g}%", "passes": "yes" if v["pass"] else "**no**"}
            for g, v in sorted(gates.items(), key=lambda gv: order.get(gv[0], len(order)))]
    passed = sum(v["pass"] for v in gates.values())
    return (f"The reference model passes {passed} of its {len(gates)} quality gates (`reference_gates`; rates "
            f"on held-out prompts, labelled by the world oracle):\n\n{to_markdown(pd.DataFrame(rows))}")


RENDERERS = {"markdown": markdown_file, "reference_card": reference_gates}


def git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(config_files: list[str], config_sha256: str) -> str:
    """Which code, config and machine wrote the blocks. No date: rewriting unchanged results changes nothing."""
    commit = git("rev-parse", "HEAD")
    if commit is None:
        code = "code not in a git checkout"
    else:
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                    *(f":(exclude){p}" for p in OUTPUTS))
        code = (f"commit `{git('describe', '--always', '--tags')}` ({commit})"
                + (" with uncommitted changes" if dirty else ""))
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("torch", "transformers", "trl"))
    return (f"Written by `snakemake docs` from {', '.join(f'`{c}`' for c in config_files)} (canonical JSON sha256 "
            f"`{config_sha256[:16]}`) at {code}, on {cpu_pin.cpu_model()} ({platform.machine()}, "
            f"{os.cpu_count()} CPUs), Python {platform.python_version()}, {versions}; CPU pins: "
            f"{cpu_pin.pins(os.environ)[1]}.")


def parse_block(spec: str) -> tuple[str, str, str]:
    name, _, rest = spec.partition("=")
    renderer, _, path = rest.partition(":")
    if not MARKER.match(marker(name, "begin")) or renderer not in RENDERERS or not path:
        raise SafedriftError(f"--block {spec!r}: expected NAME=RENDERER:PATH with RENDERER one of "
                             f"{', '.join(sorted(RENDERERS))}")
    return name, renderer, path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readme", required=True)
    p.add_argument("--block", action="append", default=[], help="NAME=RENDERER:PATH (repeatable)")
    p.add_argument("--config-files", nargs="*", default=[], help="the config files of this run (for provenance)")
    p.add_argument("--config-sha256", required=True, help="sha256 of the run's canonical config JSON")
    p.add_argument("--run-times", metavar="LOGS", help="write the run_times block from LOGS/benchmarks and the "
                   "Snakemake run logs in --snakemake-logs (runs of --config-md5, model --model)")
    p.add_argument("--snakemake-logs", default=".snakemake/log")
    p.add_argument("--config-md5", help="Snakemake's MD5 of the config (its log header's `Config MD5`)")
    p.add_argument("--model", help="the model whose job time the run_times block breaks down")
    a = p.parse_args(argv)
    blocks = {"provenance": provenance(a.config_files, a.config_sha256)}
    if a.run_times:
        blocks["run_times"] = run_times.render(a.snakemake_logs, a.run_times, a.model, a.config_md5)
    for name, renderer, path in map(parse_block, a.block):
        blocks[name] = RENDERERS[renderer](path)
    changed = write_readme(a.readme, blocks)
    print(f"{a.readme}: {'rewrote' if changed else 'unchanged'} blocks {', '.join(sorted(blocks))}")


if __name__ == "__main__":
    main()
