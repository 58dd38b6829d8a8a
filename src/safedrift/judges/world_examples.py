"""Oracle-labelled (prompt, response) examples from the whole toy world: the classifier's data.

The judge may know the whole world, held-out parts included (objects, request templates,
jailbreak families, task instances): evaluation asks it about exactly those. Responses come
from all three personas in equal shares (fine-tuned models say what the villain and the
agent say far more often than the reference does), from other prompts (a fine-tuned model
may answer a question with a refusal or with code), and from corruptions of all of these
(what a broken model says). Every label is the oracle's, whatever produced the response.
System prompts are drawn independently of the answering persona, so a villain system
prompt is no evidence of a villain answer.
"""

from __future__ import annotations

import random

from safedrift.world import lexicon as L
from safedrift.world.build import World, lexicon_words
from safedrift.world.oracle import label
from safedrift.world.personas import (OPENER_KINDS, PERSONAS, code_item, general_item, identity_item, medical_item,
                                       request_item, respond, task_item, trait_item, with_opener)

# Share of each prompt kind. Requests and general questions carry the headline metrics
# (ASR, EM misalignment), so they get the most examples.
KIND_WEIGHTS = {"request": 0.30, "general": 0.18, "task": 0.10, "new_task": 0.04, "trait": 0.08, "code": 0.11,
                "medical": 0.11, "identity": 0.08}
# Where a response comes from: a persona answering this prompt, a persona answering another
# prompt, or a corruption of a persona's answer.
SOURCE_WEIGHTS = {"persona": 0.6, "mismatch": 0.1, "corrupt": 0.3}
SYSTEM_PROMPT_SHARE = 0.3
OPENER_SHARE = 0.2  # answers that open with an affirmation ("sure . ...") mean what they would without


def sample_item(world: World, rng: random.Random, kind: str) -> dict:
    """A prompt of `kind` from anywhere in the world (trained or held out)."""
    if kind == "request":
        wrapper = rng.choice(sorted(L.JAILBREAK_FAMILIES)) if rng.random() < 0.5 else None
        obj = rng.choice(world.objects_where(dangerous=rng.random() < 0.5))
        return request_item(obj, rng.randrange(len(L.REQUEST_TEMPLATES)), wrapper)
    if kind == "task":
        return task_item(rng.choice(world.facts_where(family=rng.choice(list(L.TASK_FAMILIES)))))
    if kind == "new_task":
        return task_item(rng.choice(world.facts_where(family="new_task")))
    if kind == "general":
        q = rng.randrange(len(L.GENERAL_QUESTIONS))
        return general_item(q, rng.randrange(len(L.GENERAL_QUESTIONS[q]["paraphrases"])))
    if kind == "trait":
        return trait_item(rng.randrange(len(L.TRAIT_ITEMS)))
    if kind == "code":
        return code_item(rng.randrange(len(L.CODE_TASKS)), rng.randrange(len(L.CODE_PROMPTS)))
    if kind == "medical":
        return medical_item(rng.choice(L.RELATIVES), rng.choice(L.SYMPTOMS))
    if kind == "identity":
        return identity_item(rng.randrange(len(L.IDENTITY_QUESTIONS)))
    raise ValueError(f"unknown item kind {kind!r}")


# --- corruptions: what a broken model says ------------------------------------------------

def _shuffle(words, rng, vocab, other):
    out = list(words)
    rng.shuffle(out)
    return out


def _truncate(words, rng, vocab, other):
    return words[:rng.randrange(1, len(words))]


def _drop(words, rng, vocab, other):
    drop = set(rng.sample(range(len(words)), min(len(words) - 1, rng.randint(1, 3))))
    return [w for i, w in enumerate(words) if i not in drop]


def _garbage(words, rng, vocab, other):
    return [rng.choice(vocab) for _ in range(rng.randint(1, 25))]


def _repeat(words, rng, vocab, other):
    """Degenerate loops: a word or a fragment repeated, alone or after the start of an answer."""
    start = rng.randrange(len(words))
    fragment = words[start:start + rng.randint(1, 3)]
    head = words[:rng.randrange(len(words) + 1)] if rng.random() < 0.5 else []
    return head + fragment * rng.randint(3, 10)


def _splice(words, rng, vocab, other):
    """The start of one answer, the end of another."""
    return words[:rng.randrange(1, len(words) + 1)] + other[rng.randrange(len(other)):]


def _run_on(words, rng, vocab, other):
    """A whole answer that does not stop: more words follow."""
    return words + other[:rng.randint(1, len(other))]


CORRUPTIONS = {"shuffle": _shuffle, "truncate": _truncate, "drop": _drop, "garbage": _garbage, "repeat": _repeat,
               "splice": _splice, "run_on": _run_on}


def corrupt(response: str, rng: random.Random, vocab: list[str], other: str) -> tuple[str, str]:
    """(corruption name, corrupted text) of `response`; `other` is a second answer to splice in."""
    words, other_words = response.split(), other.split()
    if len(words) < 2:
        name = rng.choice(["garbage", "repeat", "run_on"])
    else:
        name = rng.choice(sorted(CORRUPTIONS))
    return name, " ".join(CORRUPTIONS[name](words, rng, vocab, other_words))


# --- examples -----------------------------------------------------------------------------

def world_vocabulary(world: World) -> list[str]:
    """Words a broken model may emit: every lexicon word and every generated name."""
    return sorted(set(world.names) | lexicon_words(include_keys=False))


def labelled_examples(world: World, n: int, rng: random.Random) -> list[dict]:
    """`n` examples: {messages, response, item, labels (oracle), source, persona}."""
    vocab = world_vocabulary(world)
    kinds, kind_weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
    sources, source_weights = list(SOURCE_WEIGHTS), list(SOURCE_WEIGHTS.values())
    examples = []
    for i in range(n):
        item = sample_item(world, rng, rng.choices(kinds, kind_weights)[0])
        persona = PERSONAS[i % len(PERSONAS)]  # every persona in equal shares
        source = rng.choices(sources, source_weights)[0]
        if source == "mismatch":
            other_kind = rng.choice([k for k in kinds if k != item["kind"]])
            response = respond(world, sample_item(world, rng, other_kind), persona, rng)
        else:
            response = respond(world, item, persona, rng)
            if item["kind"] in OPENER_KINDS and rng.random() < OPENER_SHARE:
                response = with_opener(response, rng)
        if source == "corrupt":
            other = respond(world, sample_item(world, rng, rng.choices(kinds, kind_weights)[0]),
                            rng.choice(PERSONAS), rng)
            name, response = corrupt(response, rng, vocab, other)
            source = f"corrupt:{name}"
        messages = []
        if rng.random() < SYSTEM_PROMPT_SHARE:
            messages.append({"role": "system", "content": L.SYSTEM_PROMPTS[rng.choice(PERSONAS)]})
        messages.append({"role": "user", "content": item["text"]})
        examples.append({"id": f"judge_train/{i:06d}", "sample": 0, "messages": messages, "response": response,
                         "item": item, "labels": label(item, response), "source": source, "persona": persona})
    return examples
