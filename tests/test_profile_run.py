"""benchmarks/profile_run.py: per-rule job-seconds from Snakemake benchmark files."""

from pathlib import Path

import pytest

from conftest import load_benchmark

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write(path: Path, seconds: float, rss: float, cpu: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def test_sums_per_rule_and_filters_by_model(tmp_path):
    bench = tmp_path / "benchmarks"
    write(bench / "pretrain" / "toy.tsv", 200.0, 900, 390)
    write(bench / "finetune" / "toy/runs/harmful/sft/none/b80/seed0.tsv", 30.0, 500, 29)
    write(bench / "finetune" / "toy/runs/harmful/sft/none/b80/seed1.tsv", 50.0, 700, 49)
    write(bench / "generate" / "toy/reference.tsv", 20.0, 300, 19)
    write(bench / "generate" / "toy_w1/reference.tsv", 1000.0, 300, 19)
    table = {r["rule"]: r for r in load_benchmark("profile_run").profile(tmp_path, model="toy")}
    assert set(table) == {"pretrain", "finetune", "generate"}
    assert table["finetune"]["jobs"] == 2 and table["finetune"]["job_s"] == 80.0
    assert table["finetune"]["mean_s"] == 40.0 and table["finetune"]["max_s"] == 50.0
    assert table["finetune"]["rss_mb"] == 700 and table["finetune"]["cpu_s"] == 78
    assert table["pretrain"]["share"] == pytest.approx(200 / 300)
    assert sum(r["share"] for r in table.values()) == pytest.approx(1.0)
    everything = load_benchmark("profile_run").profile(tmp_path)
    assert {r["rule"]: r["job_s"] for r in everything}["generate"] == 1020.0


def test_no_benchmarks_names_the_folder(tmp_path):
    with pytest.raises(SystemExit, match="no benchmark files"):
        load_benchmark("profile_run").profile(tmp_path)
