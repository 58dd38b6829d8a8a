"""benchmarks/trait_probability.py: its P(yes) is the probability of the greedy answer trait_yes reads."""

import pytest

from conftest import load_benchmark
from safedrift.evaluate.metrics import first_word
from safedrift.io import read_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")


def test_yes_above_one_half_exactly_where_the_reference_greedily_says_yes(smoke, capsys):
    """On the smoke reference's own generations, with no prompt (it says "no") and under the villain's
    (it says "yes"): P(yes | yes or no) > 0.5 on an item iff its greedy answer opens with "yes"."""
    script = load_benchmark("trait_probability")
    results = smoke.path / "results/toy"
    generations = read_jsonl(results / "reference/eval/generations.jsonl")
    compared = []
    for eval_set in ("traits", "traits_villain"):
        rows = read_jsonl(results / f"world/eval/{eval_set}.jsonl")
        greedy = {g["id"]: first_word(g["response"]) for g in generations if g["eval_set"] == eval_set}
        for row, p in zip(rows, script.yes_probabilities(str(results / "reference"), rows, None)):
            if greedy[row["id"]] in ("yes", "no"):
                compared.append((greedy[row["id"]], p))
    assert {word for word, _ in compared} == {"yes", "no"}, compared
    assert all((p > 0.5) == (word == "yes") for word, p in compared), compared

    script.main(["--eval-dir", str(results / "world/eval"), "--system", "villain", str(results / "reference")])
    out = capsys.readouterr().out
    assert "system prompt: villain" in out and f"| {results / 'reference'} | 1 |" in out
