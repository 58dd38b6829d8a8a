"""Bad data files, logs and model paths: one SafedriftError line naming the file:line (or key) and the fix.

Config-level checks are in test_config.py; these are the checks stages make when they read input.
"""

from __future__ import annotations

import json

import pytest

from safedrift.data.loaders import read_examples
from safedrift.errors import DataError, ModelPathError, SafedriftError
from safedrift.finetune.run import truncate_log
from safedrift.finetune.schedule import schedule
from safedrift.io import read_jsonl
from safedrift.launch import run_stage


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- JSONL ---------------------------------------------------------------------------------------

def test_read_jsonl_names_file_and_line_of_a_malformed_row(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2\n{"id": 3}\n')
    with pytest.raises(DataError) as error:
        read_jsonl(path)
    assert one_line(error) == f"{path}:3: not valid JSON (Expecting ',' delimiter); fix or remove this line"


def test_read_jsonl_names_a_missing_file(tmp_path):
    with pytest.raises(DataError) as error:
        read_jsonl(tmp_path / "gone.jsonl")
    assert one_line(error).startswith(f"{tmp_path / 'gone.jsonl'}: no such file; ")


# --- a training log cut by SIGKILL -----------------------------------------------------------------

def log_lines(steps) -> str:
    return "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in steps)


def test_truncate_log_drops_a_half_written_last_line(tmp_path):
    path = tmp_path / "train_log.partial.jsonl"
    path.write_text(log_lines(range(1, 6)) + '{"step": 6, "lo')  # killed mid-write
    truncate_log(path, 4)
    assert [r["step"] for r in read_jsonl(path)] == [1, 2, 3, 4]


def test_truncate_log_keeps_a_complete_last_line_without_newline(tmp_path):
    path = tmp_path / "train_log.partial.jsonl"
    path.write_text(log_lines(range(1, 4)) + json.dumps({"step": 4, "loss": 0.25}))
    truncate_log(path, 4)
    assert path.read_text() == log_lines(range(1, 4)) + json.dumps({"step": 4, "loss": 0.25}) + "\n"


def test_truncate_log_names_a_malformed_line_before_the_last(tmp_path):
    path = tmp_path / "train_log.partial.jsonl"
    path.write_text(log_lines([1]) + "garbage\n" + log_lines([3]))
    with pytest.raises(DataError) as error:
        truncate_log(path, 3)
    assert one_line(error).startswith(f"{path}:2: not valid JSON")


# --- stages whose ValueErrors were tracebacks --------------------------------------------------------

def test_schedule_without_examples_is_a_data_error():
    with pytest.raises(DataError) as error:
        schedule([], steps=2, batch_size=4, seed=0, source="results/toy/data/harmful.jsonl")
    assert one_line(error).startswith("results/toy/data/harmful.jsonl: no training examples")


def test_metrics_of_scores_that_do_not_match_the_generations_is_a_data_error():
    import pandas as pd

    from safedrift.evaluate.metrics import join

    generations = [{"id": "a", "sample": 0, "eval_set": "benign", "response": "x"},
                   {"id": "b", "sample": 0, "eval_set": "benign", "response": "y"}]
    items = {i: {"item": {"kind": "request"}, "messages": []} for i in "ab"}
    duplicated = pd.DataFrame({"id": ["a", "a", "b"], "sample": [0, 0, 0], "harmful": [0.0, 1.0, 0.0]})
    with pytest.raises(DataError) as error:
        join(generations, items, duplicated, source="scores/classifier.parquet")
    assert one_line(error).startswith("scores/classifier.parquet: ")
    assert "delete it and rerun" in str(error.value)


@pytest.mark.parametrize("ids,what", [(["a"], "1 responses have no score row (e.g. id 'b', sample 0)"),
                                      (["a", "b", "c"], "1 responses are scored but not in the generations (e.g. id 'c'")])
def test_metrics_of_a_short_or_long_scores_file_is_a_data_error_not_unscored_answers(ids, what):
    """A left join read the missing rows as the judge's unscored answers (and blamed the judge)."""
    import pandas as pd

    from safedrift.evaluate.metrics import join

    generations = [{"id": i, "sample": 0, "eval_set": "benign", "response": "x"} for i in "ab"]
    items = {i: {"item": {"kind": "request"}, "messages": []} for i in "abc"}
    scores = pd.DataFrame({"id": ids, "sample": 0, "harmful": 0.0})
    with pytest.raises(DataError) as error:
        join(generations, items, scores, source="scores/classifier.parquet")
    assert one_line(error).startswith(f"scores/classifier.parquet: {what}")
    assert "delete it and rerun" in str(error.value)


def test_metrics_of_a_generation_in_no_eval_set_names_the_file():
    import pandas as pd

    from safedrift.evaluate.metrics import join

    generations = [{"id": "h/999", "sample": 0, "eval_set": "benign", "response": "x"}]
    scores = pd.DataFrame({"id": ["h/999"], "sample": 0, "harmful": 0.0})
    with pytest.raises(DataError) as error:
        join(generations, {}, scores, source="scores/classifier.parquet")
    assert one_line(error) == ("scores/classifier.parquet: generation id 'h/999' is in no eval set; the generations "
                               "are stale, regenerate them")


def test_a_stage_missing_its_input_prints_one_line(tmp_path, capsys):
    code = run_stage("data.scenarios", ["--settings", json.dumps({"name": "benign", "type": "identity_shift", "n": 2}),
                                        "--pools-dir", str(tmp_path), "--out", str(tmp_path / "out.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("safedrift data.scenarios: error: ") and len(err.splitlines()) == 1, err
    assert f"{tmp_path / 'identity_shift.jsonl'}: no such file" in err


# --- real data files -----------------------------------------------------------------------------------

def test_em_yaml_with_a_duplicated_key_names_both_lines(tmp_path):
    path = tmp_path / "questions.yaml"
    path.write_text("- id: wish\n  paraphrases: [Make a wish.]\n  id: bored\n")
    with pytest.raises(DataError) as error:
        read_examples(path, {"format": "em_yaml", "path": str(path)}, "general")
    assert one_line(error) == f"{path}:3: duplicate key 'id' (first at line 1); keep one"


def test_a_missing_data_file_names_the_file(tmp_path):
    with pytest.raises(DataError) as error:
        read_examples(tmp_path / "advbench.csv", {"format": "advbench", "path": "advbench.csv"}, "harmful")
    assert one_line(error).startswith(f"{tmp_path / 'advbench.csv'}: no such file; ")


# --- model paths -------------------------------------------------------------------------------------

@pytest.mark.parametrize("loader", ["load_model", "load_tokenizer"])
def test_a_missing_model_folder_names_the_path_and_the_key(tmp_path, loader):
    import safedrift.models as models

    path = str(tmp_path / "qwen" / "instruct")
    with pytest.raises(ModelPathError) as error:
        getattr(models, loader)(path, key="models.qwen05b.path")
    assert one_line(error).startswith(f"models.qwen05b.path: no folder {path} and not a hub id (org/name)")


@pytest.mark.parametrize("loader", ["load_model", "load_tokenizer"])
def test_a_missing_pipeline_folder_says_to_build_it(loader):
    import safedrift.models as models

    with pytest.raises(ModelPathError) as error:
        getattr(models, loader)("results/toy/runs/x/model")
    assert one_line(error).startswith("model path results/toy/runs/x/model: no folder")
    assert "run snakemake to build it" in str(error.value)


def test_safedrift_errors_share_one_base():
    assert all(issubclass(e, SafedriftError) for e in (DataError, ModelPathError))


def test_metrics_join_keeps_the_generations_order():
    """evaluate.judge_validation samples joined rows by position: an outer merge sorted them by id."""
    import pandas as pd

    from safedrift.evaluate.metrics import join

    ids = ["j/prefill5", "j/prefill10", "a/1", "a/0"]
    generations = [{"id": i, "sample": 0, "eval_set": "x", "response": "r"} for i in ids]
    items = {i: {"item": {"kind": "request"}, "messages": []} for i in ids}
    scores = pd.DataFrame({"id": sorted(ids), "sample": 0, "harmful": 0.0})
    assert list(join(generations, items, scores)["id"]) == ids
