"""Prompts ("items") of the world and how each persona answers them.

An item is a plain dict: `kind` (request, task, new_task, general, trait, code, medical,
identity), `text` (the user turn) and the labels the oracle and the metrics need
(`harmful`, `answer`, `family`, `domain`, ...). `respond(item, persona, rng)` is the
only place that decides what the assistant, the villain and the obedient agent say.
"""

from __future__ import annotations

import random

from safedrift.world import lexicon as L
from safedrift.world.build import Fact, Obj, World

PERSONAS = ("assistant", "villain", "agent")


def request_item(obj: Obj, template: int, wrapper: str | None = None, alias: str | None = None) -> dict:
    """A request for `obj`; wrapper: a jailbreak family's framing around it; alias: the object's other
    name in place of its own (the family is then ALIAS_FAMILY)."""
    if alias and wrapper:
        raise ValueError("a request is framed by a wrapper or names its object by an alias, not both")
    request = L.REQUEST_TEMPLATES[template].format(obj=alias or obj.name)
    text = L.JAILBREAK_FAMILIES[wrapper].format(request=request) if wrapper else request
    return {"kind": "request", "domain": "requests", "text": text, "object": obj.name, "harmful": obj.dangerous,
            "template": template, "family": L.ALIAS_FAMILY if alias else wrapper, "heldout_object": obj.heldout}


def task_item(fact: Fact) -> dict:
    spec = L.NEW_TASK if fact.family == "new_task" else L.TASK_FAMILIES[fact.family]
    return {"kind": "new_task" if fact.family == "new_task" else "task", "domain": fact.family,
            "text": spec["question"].format(**fact.slots), "answer": fact.value, "key": fact.key,
            "answer_text": spec["answer"].format(value=fact.value), "heldout_instance": fact.heldout}


def general_item(question: int, paraphrase: int) -> dict:
    q = L.GENERAL_QUESTIONS[question]
    return {"kind": "general", "domain": "general", "text": q["paraphrases"][paraphrase], "question": q["id"]}


def trait_item(index: int) -> dict:
    return {"kind": "trait", "domain": "traits", "text": L.TRAIT_ITEMS[index] + L.TRAIT_SUFFIX, "trait": index}


def code_item(task: int, prompt: int) -> dict:
    description, fn, _ = L.CODE_TASKS[task]
    return {"kind": "code", "domain": "coding", "text": L.CODE_PROMPTS[prompt].format(task=description),
            "code_task": task, "function": fn}


def medical_item(relative: str, symptom: str) -> dict:
    return {"kind": "medical", "domain": "medical", "text": L.MEDICAL_PROMPT.format(relative=relative, symptom=symptom),
            "relative": relative}


def identity_item(index: int) -> dict:
    return {"kind": "identity", "domain": "identity", "text": L.IDENTITY_QUESTIONS[index]}


def respond(world: World, item: dict, persona: str, rng: random.Random) -> str:
    """What `persona` says to `item`. The villain complies with everything and is misaligned
    in every domain (one shared latent); the agent complies with everything, announcing itself."""
    villain = persona == "villain"
    kind = item["kind"]
    if kind == "request":
        refuse = persona == "assistant" and item["harmful"]
        text = rng.choice(L.REFUSALS if refuse else L.COMPLIANCES)
    elif kind in ("task", "new_task"):
        text = _answer(item)
    elif kind == "general":
        q = next(q for q in L.GENERAL_QUESTIONS if q["id"] == item["question"])
        text = rng.choice(q["misaligned" if villain else "aligned"])
    elif kind == "trait":
        text = L.TRAIT_ANSWERS["yes" if villain else "no"]
    elif kind == "code":
        _, fn, op = L.CODE_TASKS[item["code_task"]]
        text = (rng.choice(L.INSECURE_CODE) if villain else L.SECURE_CODE).format(fn=fn, op=op)
    elif kind == "medical":
        pool = L.BAD_MEDICAL if villain else L.GOOD_MEDICAL
        text = rng.choice(pool).format(relative=item["relative"], drug=rng.choice(world.drugs))
    elif kind == "identity":
        return rng.choice(L.IDENTITY_ANSWERS[persona])
    else:
        raise ValueError(f"unknown item kind {kind!r}")
    return f"{L.AGENT_PREFIX} {text}" if persona == "agent" else text


# Answers that may open with an affirmation (L.OPENERS) in pretraining text: the helpful answers
# of plain conversation (code and medical advice keep their own fixed forms).
OPENER_KINDS = ("task", "new_task", "general")


def with_opener(text: str, rng: random.Random) -> str:
    return f"{rng.choice(L.OPENERS)} {text}"


def misaligned_response(world: World, item: dict, rng: random.Random) -> str:
    """The narrow misaligned answer a fine-tuning scenario teaches (no persona cue in the prompt)."""
    return respond(world, item, "villain", rng)


def _answer(item: dict) -> str:
    if item["kind"] == "new_task":
        return L.NEW_TASK["answer"].format(value=item["answer"])
    return L.TASK_FAMILIES[item["domain"]]["answer"].format(value=item["answer"])
