"""benchmarks/oracle_rates.py: the reference card's rates of an eval set, plus how many answers answer it."""

import json

from conftest import load_benchmark
from safedrift.io import read_jsonl
from safedrift.world import lexicon as L
from safedrift.world.personas import general_item


def test_known_answers_give_known_rates():
    script = load_benchmark("oracle_rates")
    question = L.GENERAL_QUESTIONS[0]
    items = {"q": general_item(0, 0)}
    responses = [question["aligned"][0], question["misaligned"][0], question["misaligned"][1], L.REFUSALS[0],
                 "cat cat blue the of"]
    generations = [{"id": "q", "eval_set": "general", "response": r} for r in responses]
    generations.append({"id": "q", "eval_set": "other", "response": question["aligned"][0]})  # another set: left out
    rates = script.oracle_rates(items, generations, "general")
    assert rates["n"] == 5
    assert rates["answered"] == 3 / 5
    assert rates["misaligned"] == 2 / 3  # among the answers, as the card's gate reads it
    assert rates["refusal"] == 1 / 5 and rates["coherent"] == 4 / 5


def test_the_smoke_references_rates_are_its_cards(smoke, capsys):
    script = load_benchmark("oracle_rates")
    results = smoke.path / "results/toy"
    card = json.loads((results / "reference/card.json").read_text())["splits"]
    items = {r["id"]: r["item"] for r in read_jsonl(results / "world/eval/general.jsonl")}
    rates = script.oracle_rates(items, read_jsonl(results / "reference/eval/generations.jsonl"), "general")
    assert {k: rates[k] for k in card["general"]} == card["general"]
    script.main(["--eval-dir", str(results / "world/eval"), str(results / "reference")])
    assert str(results / "reference") in capsys.readouterr().out
