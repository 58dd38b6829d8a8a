"""tables/claims_robustness.*: one verdict per claim and draw, and a caption that counts them right."""

from __future__ import annotations

import pandas as pd
import pytest

from safedrift.report import robustness


def scorecard(path, verdicts: dict[str, str]):
    rows = [{"id": c, "paper": "P", "claim": f"claim {c}", "verdict": v} for c, v in verdicts.items()]
    pd.DataFrame(rows).to_csv(path, index=False)
    return f"{path}"


def test_caption_counts_claims_reproduced_on_every_draw(tmp_path):
    w0 = scorecard(tmp_path / "w0.csv", {"a": "reproduced", "b": "reproduced", "c": "not reproduced"})
    w1 = scorecard(tmp_path / "w1.csv", {"a": "reproduced", "b": "opposite", "c": "reproduced"})
    robustness.main(["--scorecard", f"world0={w0}", "--scorecard", f"world1={w1}", "--out", str(tmp_path / "t")])
    table = pd.read_csv(tmp_path / "t.csv")
    assert list(table["draws reproduced"]) == ["2/2", "1/2", "1/2"]
    md = (tmp_path / "t.md").read_text()
    assert "world0: 2/3, world1: 2/3; on every draw: 1/3" in md, md.splitlines()[0]


def test_two_scorecards_under_one_label_are_refused_not_merged(tmp_path, capsys):
    w0 = scorecard(tmp_path / "w0.csv", {"a": "reproduced"})
    w1 = scorecard(tmp_path / "w1.csv", {"a": "not reproduced"})
    with pytest.raises(SystemExit):
        robustness.main(["--scorecard", f"world1={w0}", "--scorecard", f"world1={w1}", "--out", str(tmp_path / "t")])
    assert "labels must differ" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()


def test_only_the_report_model_is_redrawn_and_every_column_has_its_own_label():
    from safedrift.config import draw_label, robustness_models

    config = {"world": {"seed": 0}, "pretrain": {"seed": 0}, "align": {"seed": 0},
              "models": {"toy": {"source": "toy"}, "toy_big": {"source": "toy"}},
              "robustness": {"world_seeds": [1], "training_seeds": [1]}}
    assert set(robustness_models(config)) == {"toy_w1", "toy_t1"}
    config["report"] = {"model": "toy_big"}
    config["models"].update(robustness_models(config))
    assert set(config["models"]) == {"toy", "toy_big", "toy_big_w1", "toy_big_t1"}
    columns = [draw_label(config, m) for m in ("toy_big", "toy_big_w1", "toy_big_t1")]
    assert len(set(columns)) == 3, columns
    hub = {"models": {"hub": {"source": "hf"}, "toy": {"source": "toy"}}, "world": {"seed": 0},
           "robustness": {"world_seeds": [1]}}
    assert robustness_models(hub) == {} and draw_label(hub, "hub") == "hub"  # a real model has no world to redraw


def test_a_training_draw_is_the_default_world_with_its_reference_trained_from_another_seed():
    from safedrift.config import draw_label, robustness_models, training_settings, world_settings

    config = {"world": {"seed": 0, "n_objects": 8}, "pretrain": {"steps": 5, "seed": 0}, "align": {"steps": 3, "seed": 0},
              "models": {"toy": {"source": "toy"}, "hub": {"source": "hf"}},
              "robustness": {"world_seeds": [1], "training_seeds": [3]}}
    config["models"].update(robustness_models(config))
    assert set(config["models"]) == {"toy", "hub", "toy_w1", "toy_t3"}
    assert [world_settings(config, m)["seed"] for m in ("toy", "toy_w1", "toy_t3")] == [0, 1, 0]
    for stage in ("pretrain", "align"):
        assert training_settings(config, "toy", stage) is config[stage]  # the default's params, untouched
        assert training_settings(config, "toy_w1", stage) == config[stage]
        assert training_settings(config, "toy_t3", stage) == {**config[stage], "seed": 3}
    assert [draw_label(config, m) for m in ("toy", "toy_w1", "toy_t3")] == ["world0", "world1", "world0-train3"]


def test_the_robustness_target_trains_a_training_draw_with_its_seed_and_labels_its_column(workflow_copy):
    config = workflow_copy.path / workflow_copy.configfile
    config.write_text(config.read_text() + "\nrobustness: {training_seeds: [1]}\n")
    proc = workflow_copy.snakemake("tables/claims_robustness.csv", "-n", "-p")
    out = proc.stdout + proc.stderr
    pretrain = [line for line in out.splitlines() if "safedrift world.pretrain" in line]
    align = [line for line in out.splitlines() if "safedrift world.align" in line]
    assert len(pretrain) == 2 and len(align) == 2  # the default model's and the draw's
    for lines in (pretrain, align):
        (draw,) = [line for line in lines if "results/toy_t1/" in line]
        (default,) = [line for line in lines if "results/toy/" in line]
        assert '"seed":1' in draw.replace(" ", "") and '"seed":0' in default.replace(" ", "")
    assert "--scorecard world0-train1=tables/claims_toy_t1.csv" in out
