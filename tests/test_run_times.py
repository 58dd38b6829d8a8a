"""report.run_times: the README's run times are read from Snakemake's run logs and benchmark files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from safedrift.report import readme, run_times

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def log_header(command: str, md5: str, date: str) -> str:
    """The header Snakemake 9 opens every run log with."""
    return (f"Assuming unrestricted shared filesystem usage.\n\nSNAKEMAKE\n=========\n  Date: {date}\n"
            f"  Command: {command}\n  Config file(s): ['config.yaml']\n  Config MD5: {md5}\n\n")


def snakemake_log(command: str, md5: str, plan: dict[str, int], done: int, elapsed: str | None,
                  date: str = "2026-12-03 10:50:10") -> str:
    """A run log as Snakemake 9 writes it (header, plan, progress, elapsed time)."""
    total = sum(plan.values())
    rows = "".join(f"{rule:<20}{n:>7}\n" for rule, n in plan.items())
    text = (log_header(command, md5, date) + "Building DAG of jobs...\nProvided cores: 2\nJob stats:\n"
            f"job                   count\n------------------  -------\n{rows}total{total:>22}\n\n"
            "Select jobs to execute...\n")
    text += "".join(f"[Thu Dec  3 10:50:16 2026]\nFinished jobid: {i} (Rule: x)\n{i} of {total} steps "
                    f"({100 * i // total}%) done\n" for i in range(1, done + 1))
    if elapsed:
        text += f"Complete log(s): /x.log\nElapsed time: {elapsed}\n"
    return text


def quiet_snakemake_log(command: str, md5: str, batches: list[int], ending: str) -> str:
    """A run log as Snakemake 9 writes it under `-q`: the header, then only "Execute N jobs..." per batch."""
    text = log_header(command, md5, "2026-12-05 19:27:03") + "Building DAG of jobs...\nUsing shell: /usr/bin/bash\n"
    text += "".join(f"Select jobs to execute...\nExecute {n} jobs...\n" for n in batches)
    return text + ending


def write_logs(folder: Path, logs: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in logs.items():
        (folder / f"{name}.snakemake.log").write_text(text)
    return folder


def test_reads_completed_runs_of_this_config_oldest_first(tmp_path):
    logs = write_logs(tmp_path / "log", {
        "2026-12-03T112907": snakemake_log(".venv/bin/snakemake --cores 2 all robustness", "aa",
                                           {"finetune": 2, "generate": 1}, 3, "1 day, 1:08:59.251842",
                                           date="2026-12-03 11:29:07"),
        "2026-12-03T105010": snakemake_log(".venv/bin/snakemake --cores 2 figures/asr.pdf", "aa",
                                           {"pretrain": 1, "finetune": 3}, 4, "0:38:54.284129"),
        "2026-12-03T120000": snakemake_log("snakemake --cores 2 all", "aa", {"finetune": 2}, 1, "0:00:10.0",
                                           date="2026-12-03 12:00:00"),  # a job failed: 1 of 2 done
        "2026-12-03T121000": snakemake_log("snakemake --cores 2 all", "aa", {"finetune": 2}, 2, None,
                                           date="2026-12-03 12:10:00"),  # killed: no elapsed time
        "2026-12-03T122000": snakemake_log("snakemake all --configfile other.yaml", "bb", {"finetune": 1}, 1,
                                           "0:00:05", date="2026-12-03 12:20:00"),  # another config
        "2026-12-03T123000": snakemake_log("snakemake --cores 2 docs", "aa", {"docs_figure": 7, "docs": 1}, 8,
                                           "0:00:24.03", date="2026-12-03 12:30:00"),  # renders the README only
    })
    runs = run_times.snakemake_runs(logs, config_md5="aa")
    assert [(r["command"], r["total"], r["seconds"]) for r in runs] == [
        (".venv/bin/snakemake --cores 2 figures/asr.pdf", 4, 38 * 60 + 54.284129),
        (".venv/bin/snakemake --cores 2 all robustness", 3, 86400 + 3600 + 8 * 60 + 59.251842)]
    assert runs[0]["plan"] == {"pretrain": 1, "finetune": 3} and runs[0]["cores"] == 2
    assert [r["config_md5"] for r in run_times.snakemake_runs(logs)] == ["aa", "aa", "bb"]  # no filter


def test_reads_completed_quiet_runs(tmp_path):
    """A `-q` run logs no plan and no progress: it counts its executed jobs, and a docs-only one is left out."""
    done = "Complete log(s): /x.log\nElapsed time: 1:18:11.346378\n"
    logs = write_logs(tmp_path / "log", {
        "1": quiet_snakemake_log(".venv/bin/snakemake --cores 2 all robustness -q --rerun-incomplete", "aa",
                                 [2, 1, 1, 2], done),
        "2": quiet_snakemake_log(".venv/bin/snakemake --cores 2 docs -q", "aa", [1, 1], done),
        "3": quiet_snakemake_log("snakemake -c 2 -q", "aa", [1],  # a job failed
                                 "Error in rule finetune:\nExiting because a job execution failed. Look above\n" + done),
        "4": quiet_snakemake_log("snakemake -q figures/asr.pdf", "aa", [1, 1], ""),  # killed: no elapsed time
        "5": quiet_snakemake_log("snakemake -q --configfile config.yaml x.yaml -j 2", "aa", [1, 1, 1], done),
    })
    runs = run_times.snakemake_runs(logs, config_md5="aa")
    assert [(Path(r["log"]).name, r["total"], r["cores"], round(r["seconds"])) for r in runs] == [
        ("1.snakemake.log", 6, 2, 4691), ("5.snakemake.log", 3, 2, 4691)]


@pytest.mark.parametrize("seconds, text", [(9.6, "10 s"), (84.2, "1 min 24 s"), (2334.28, "38 min 54 s"),
                                           (3729.4, "1 h 02 min 09 s")])
def test_duration(seconds, text):
    assert run_times.duration(seconds) == text


@pytest.mark.parametrize("command, shown", [
    (".venv/bin/snakemake --cores 2 figures/asr.pdf", "snakemake --cores 2 figures/asr.pdf"),
    ("/x/lib/python3.11/site-packages/snakemake/__main__.py --cores 2 all", "snakemake --cores 2 all"),
    ("snakemake", "snakemake"), (None, "?")])
def test_command_line(command, shown):
    assert run_times.command_line(command) == shown


def test_block_shows_runs_and_wall_seconds_per_rule(tmp_path):
    logs = write_logs(tmp_path / "log", {"a": snakemake_log(".venv/bin/snakemake --cores 2 figures/asr.pdf", "aa",
                                                            {"pretrain": 1, "finetune": 2}, 3, "0:38:54.28")})
    for name, seconds in (("pretrain/toy.tsv", 600.0), ("finetune/toy/runs/a/seed0.tsv", 30.0),
                          ("finetune/toy/runs/a/seed1.tsv", 10.0), ("finetune/toy_w1/runs/a/seed0.tsv", 999.0)):
        path = tmp_path / "logs" / "benchmarks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(BENCHMARK_HEADER + f"{seconds}\t0:00:01\t17\t1\t1\t1\t0\t0\t0\t0.04\n")
    text = run_times.render(logs, tmp_path / "logs", "toy", "aa")
    assert "| 2026-12-03 10:50 | `snakemake --cores 2 figures/asr.pdf` | 2 | 3 | 38 min 54 s |" in text
    assert "| pretrain | 1 | 600 | 94% | 600.0 | 600.0 |\n| finetune | 2 | 40 | 6% | 20.0 | 30.0 |\n" in text
    assert "peak RSS" not in text and "CPU" not in text  # the zygote's client, not the job: not shown
    assert run_times.render(logs, tmp_path / "logs", "toy", "other").startswith("No completed Snakemake run")


def test_docs_writes_the_run_times_of_the_smoke_runs(built):
    """The docs target's config MD5 is Snakemake's own (its run logs' header): the smoke runs are found."""
    shutil.copy2(ROOT / "README.md", built.path / "README.md")
    # `all` leaves the README's renders alone (rule claims wrote docs/figures/claims.png on any config)
    assert not (built.path / "docs/figures").exists(), sorted((built.path / "docs/figures").iterdir())
    render = built.path / "docs/figures/reference.png"
    render.unlink(missing_ok=True)
    built.run("docs")
    assert render.stat().st_size > 5000  # the README's card render is the docs run's, not a stale copy
    text = (built.path / "README.md").read_text()
    begin, end = readme.regions(text.split("\n"), "README.md")["run_times"]
    block = "\n".join(text.split("\n")[begin:end])
    assert re.search(r"\| `snakemake --cores 2 all --configfile configs/smoke.yaml` \| 2 \| [1-9]\d* \| ", block), block
    assert re.search(r"\| finetune \| [1-9]\d* \| ", block) and "| pretrain | 1 |" in block, block
    assert "snakemake --cores 2 docs" not in block  # the docs run renders; it is not a cost of the results
    built.run("docs")  # a second docs run finds the same runs: the README is not rewritten
    assert "README.md: unchanged" in (built.path / "logs/report/readme.log").read_text()
