"""How long the runs behind the results took: Snakemake's own run logs and the heavy rules' benchmarks.

Two sources, both written while the workflow runs, so the README's times are read, never typed:

- `.snakemake/log/*.snakemake.log`: Snakemake writes one per run, with a header (date, command,
  the MD5 of the config it ran), the job plan ("Job stats"), progress lines and the
  elapsed wall time. `snakemake_runs` reads the completed ones. A quiet run (`-q`) logs neither plan
  nor progress, only "Execute N jobs..." per batch: its jobs are those counted, it completed if it
  logged an elapsed time and no failure, and its targets come from its command.
- `logs/benchmarks/<rule>/<wildcards>.tsv`: the `benchmark:` files of the heavy rules (wall seconds
  per job; rerunning a job overwrites its file). `job_profile` sums them per rule.

With the fork server on (src/safedrift/zygote.py, the default for local runs) a job's stage runs in
a child of the server, so Snakemake measures the client: wall seconds are right, CPU seconds and
RSS are the client's. The README therefore shows wall seconds only.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

from safedrift.report.tables import to_markdown

HEADER_FIELD = re.compile(r"^\s+(Date|Command|Config MD5): (.*)$")
HEADER_KEYS = {"Date": "date", "Command": "command", "Config MD5": "config_md5"}
PLAN_ROW = re.compile(r"^(\S+)\s+(\d+)$")
PROGRESS = re.compile(r"^(\d+) of (\d+) steps \(\d+%\) done$")
ELAPSED = re.compile(r"^Elapsed time: (?:(\d+) days?, )?(\d+):(\d+):(\d+(?:\.\d+)?)$")
CORES = re.compile(r"^Provided cores: (\d+)$")
EXECUTE = re.compile(r"^Execute (\d+) jobs\.\.\.$")
FAILED = ("Exiting because a job execution failed", "Error in rule ", "WorkflowError")
CORES_OPTION = re.compile(r"(?:^|\s)(?:--cores|-c|--jobs|-j)[ =](\d+)(?:\s|$)")
# Rules that only render the README; a run of nothing else is the docs run itself, not a result's cost.
DOCS_RULES = frozenset({"docs", "docs_figure", "reference_render", "claims_render"})


def job_stats(lines: list[str]) -> dict[str, int]:
    """Rule -> planned jobs, from the first "Job stats" table Snakemake prints (run logs, dry runs):
    a header, a rule of dashes, one "rule count" row per rule, then "total N"."""
    stripped = [line.strip() for line in lines]
    if "Job stats:" not in stripped:
        return {}
    plan = {}
    for line in stripped[stripped.index("Job stats:") + 1:]:
        if m := PLAN_ROW.match(line):
            if m[1] != "total":
                plan[m[1]] = int(m[2])
        elif not line.startswith(("job ", "---")):
            break
    return plan


def parse_snakemake_log(path: str | Path) -> dict:
    """One run's log -> date, command, config_md5, cores, plan {rule: jobs}, done, total, seconds (None if
    the run did not finish)."""
    lines = Path(path).read_text(errors="replace").splitlines()
    run = {"log": str(path), "date": None, "command": None, "config_md5": None, "cores": None,
           "plan": job_stats(lines), "done": 0, "total": 0, "seconds": None, "executed": 0,
           "failed": any(line.startswith(FAILED) for line in lines)}
    for line in lines:
        if m := EXECUTE.match(line.strip()):
            run["executed"] += int(m[1])
        if (m := HEADER_FIELD.match(line)) and run[HEADER_KEYS[m[1]]] is None:
            run[HEADER_KEYS[m[1]]] = m[2].strip()
        elif (m := CORES.match(line)) and run["cores"] is None:
            run["cores"] = int(m[1])
        elif m := PROGRESS.match(line):
            run["done"], run["total"] = int(m[1]), int(m[2])
        elif m := ELAPSED.match(line):
            days, hours, minutes, seconds = m.groups()
            run["seconds"] = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if run["total"] == 0 and not run["plan"] and run["executed"]:  # quiet: what it executed is its plan
        run["done"] = run["total"] = run["executed"]
    if run["cores"] is None and (m := CORES_OPTION.search(run["command"] or "")):
        run["cores"] = int(m[1])
    return run


def command_targets(command: str | None) -> set[str]:
    """The targets a logged command names: its words that are neither options, numbers nor config files
    (`snakemake --cores 2 docs -q` -> {"docs"}); a heuristic, used only for quiet runs, which log no plan."""
    words = (command or "").split()[1:]
    return {w for w in words if not w.startswith("-") and not w.isdigit()
            and not w.endswith((".yaml", ".yml", ".json")) and "=" not in w}


def snakemake_runs(log_dir: str | Path, config_md5: str | None = None) -> list[dict]:
    """The completed runs (every planned job done) of this config, oldest first; docs-only runs left out."""
    runs = []
    for path in sorted(Path(log_dir).glob("*.snakemake.log")):
        run = parse_snakemake_log(path)
        finished = (run["seconds"] is not None and not run["failed"] and run["total"] > 0
                    and run["done"] == run["total"])
        rules = set(run["plan"]) if run["plan"] else command_targets(run["command"]) or {"(default target)"}
        if (finished and rules - DOCS_RULES
                and (config_md5 is None or run["config_md5"] == config_md5)):
            runs.append(run)
    return sorted(runs, key=lambda r: (r["date"] or "", r["log"]))


def read_benchmark(path: Path) -> dict[str, float]:
    """The last row of one benchmark file (a job repeated with --benchmark-repeats writes several)."""
    with path.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        raise SystemExit(f"{path}: empty benchmark file; rerun its job or delete the file")

    def number(key: str) -> float:
        value = rows[-1].get(key, "NA")
        return float(value) if value not in ("NA", "", "-") else 0.0

    return {"s": number("s"), "cpu": number("cpu_time"), "rss": number("max_rss")}


def job_profile(logs: str | Path, model: str | None = None) -> list[dict]:
    """One row per rule of `logs/benchmarks` (only `model`'s jobs if given), slowest first."""
    root = Path(logs) / "benchmarks"
    if not root.is_dir():
        raise SystemExit(f"{root}: no benchmark files; run the workflow first "
                         "(e.g. snakemake --cores 2 figures/asr.pdf)")
    table = []
    for rule_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(rule_dir.rglob("*.tsv"))
        if model:
            files = [f for f in files if f.relative_to(rule_dir).parts[0] in (model, f"{model}.tsv")]
        jobs = [read_benchmark(f) for f in files]
        if jobs:
            seconds = [j["s"] for j in jobs]
            table.append({"rule": rule_dir.name, "jobs": len(jobs), "job_s": sum(seconds),
                          "mean_s": sum(seconds) / len(jobs), "max_s": max(seconds),
                          "cpu_s": sum(j["cpu"] for j in jobs), "rss_mb": max(j["rss"] for j in jobs)})
    total = sum(r["job_s"] for r in table) or 1.0
    for row in table:
        row["share"] = row["job_s"] / total
    return sorted(table, key=lambda r: -r["job_s"])


def duration(seconds: float) -> str:
    """3729.4 -> '1 h 02 min 09 s'; 84.2 -> '1 min 24 s'; 9.6 -> '10 s'."""
    s = round(seconds)
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s" if m else f"{s} s"


def command_line(command: str | None) -> str:
    """Snakemake's logged argv, its program by name: `.venv/bin/snakemake` and `python -m snakemake`'s
    `.../snakemake/__main__.py` -> `snakemake`."""
    if not command:
        return "?"
    program, _, rest = command.partition(" ")
    path = Path(program)
    return " ".join(filter(None, (path.parent.name if path.name == "__main__.py" else path.name, rest)))


def render(log_dir: str | Path, logs: str | Path, model: str, config_md5: str | None) -> str:
    """The README block: the completed runs of this config, then where the model's job time went."""
    runs = snakemake_runs(log_dir, config_md5)
    if runs:
        rows = [{"started": (r["date"] or "?")[:16], "command": f"`{command_line(r['command'])}`",
                 "cores": r["cores"] if r["cores"] is not None else "?", "jobs": r["total"],
                 "wall time": duration(r["seconds"])} for r in runs]
        text = (f"Completed Snakemake runs of this config in this checkout, oldest first (`{log_dir}/`; "
                f"runs that only rendered the README left out):\n\n{to_markdown(pd.DataFrame(rows)).rstrip()}")
    else:
        text = f"No completed Snakemake run of this config is logged in `{log_dir}/`."
    profile = job_profile(logs, model) if (Path(logs) / "benchmarks").is_dir() else []
    if profile:
        rows = [{"rule": r["rule"], "jobs": r["jobs"], "job-seconds": f"{r['job_s']:.0f}",
                 "share": f"{r['share']:.0%}", "mean s": f"{r['mean_s']:.1f}", "max s": f"{r['max_s']:.1f}"}
                for r in profile]
        text += (f"\n\nWhere the job time of model `{model}` went (`{logs}/benchmarks/`, the latest run of each "
                 f"job; job-seconds add up jobs that ran side by side, so they exceed the wall time; "
                 f"`benchmarks/profile_run.py` prints this table):\n\n{to_markdown(pd.DataFrame(rows))}")
    return text
