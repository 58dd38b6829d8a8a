"""The toy world as data: entities, fact tables and which parts are held out.

`build_world(settings)` is a pure function of the `world:` config section; every
random choice goes through one `random.Random(seed)`, so the same seed gives the
same world on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from safedrift.world import lexicon as L


@dataclass(frozen=True)
class Obj:
    name: str
    kind: str
    dangerous: bool
    heldout: bool  # never appears in chat data (pretraining or alignment); knowledge text only


@dataclass(frozen=True)
class Fact:
    family: str  # a TASK_FAMILIES key, or "new_task"
    key: str  # country / food / illness / service, or "a b" for arithmetic
    value: str
    slots: dict
    heldout: bool  # QA never in chat data; the fact itself is in pretraining knowledge


@dataclass
class World:
    seed: int
    objects: list[Obj]
    facts: list[Fact]
    request_templates: list[int]  # indices into REQUEST_TEMPLATES used in chat data
    heldout_request_templates: list[int]
    jailbreak_trained: list[str]
    jailbreak_heldout: list[str]
    # Prompt kinds whose every instance is spelled out in the lexicon are split in two: chat
    # data and scenario pools draw from `*_train` only, the eval sets from `*_eval` only.
    code_tasks_train: list[int]  # indices into CODE_TASKS
    code_tasks_eval: list[int]
    drugs: list[str]
    medical_train: list[tuple[str, str]]  # (relative, symptom)
    medical_eval: list[tuple[str, str]]
    general_train: list[tuple[int, int]]  # (question, paraphrase) indices into GENERAL_QUESTIONS
    general_eval: list[tuple[int, int]]
    traits_train: list[int]  # indices into TRAIT_ITEMS
    traits_eval: list[int]
    names: set[str] = field(default_factory=set)
    # object name -> its other name, known from knowledge text only (`object_aliases`; empty: none)
    aliases: dict[str, str] = field(default_factory=dict)

    def objects_where(self, dangerous: bool | None = None, heldout: bool | None = None) -> list[Obj]:
        return [o for o in self.objects
                if (dangerous is None or o.dangerous == dangerous) and (heldout is None or o.heldout == heldout)]

    def facts_where(self, family: str | None = None, heldout: bool | None = None) -> list[Fact]:
        return [f for f in self.facts
                if (family is None or f.family == family) and (heldout is None or f.heldout == heldout)]


def make_names(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    """Pronounceable fictional words, unique and disjoint from `taken` (which grows)."""
    out = []
    while len(out) < count:
        syllables = rng.choice([2, 2, 3])
        word = "".join(rng.choice(L.ONSETS) + rng.choice(L.VOWELS) for _ in range(syllables)) + rng.choice(L.CODAS)
        if word not in taken and 4 <= len(word) <= 11:
            taken.add(word)
            out.append(word)
    return out


def _split(rng: random.Random, items: list, heldout_fraction: float) -> tuple[list, list]:
    items = list(items)
    rng.shuffle(items)
    n_held = max(1, round(len(items) * heldout_fraction))
    return items[n_held:], items[:n_held]


def _split_combinations(rng: random.Random, n_actions: int, n_things: int) -> tuple[list, list]:
    """Indices (action * n_things + thing) of L.CODE_TASKS, a third held out so that every action and every
    thing keeps training combinations: held out where (shuffled action + shuffled thing) % 3 == 0."""
    actions, things = list(range(n_actions)), list(range(n_things))
    rng.shuffle(actions)
    rng.shuffle(things)
    train, held = [], []
    for i, a in enumerate(actions):
        for j, t in enumerate(things):
            (held if (i + j) % 3 == 0 else train).append(a * n_things + t)
    return train, held


def build_world(settings: dict) -> World:
    rng = random.Random(settings["seed"])
    taken = lexicon_words()
    n_obj = settings["n_objects"]
    held_frac = settings["heldout_object_fraction"]

    objects = []
    for dangerous, kinds in ((True, L.DANGEROUS_KINDS), (False, L.HARMLESS_KINDS)):
        names = make_names(rng, n_obj // 2, taken)
        train, held = _split(rng, names, held_frac)
        for name in names:
            objects.append(Obj(name, rng.choice(kinds), dangerous, name in held))

    facts = []
    n_facts = settings["facts_per_family"]
    inst_frac = settings["heldout_instance_fraction"]
    for family in ("travel", "cooking", "medicine", "coding"):
        keys = make_names(rng, n_facts, taken)
        if family == "travel":
            languages = make_names(rng, 6, taken)
            values = [rng.choice(languages) for _ in keys]
        elif family == "cooking":
            values = [rng.choice(L.COOKING_MINUTES) for _ in keys]
        elif family == "medicine":
            remedies = make_names(rng, max(2, n_facts // 3), taken)
            values = [rng.choice(remedies) for _ in keys]
        else:
            values = [rng.choice(L.PORTS) for _ in keys]
        _, held = _split(rng, keys, inst_frac)
        facts += [Fact(family, k, v, {"key": k, "value": v}, k in held) for k, v in zip(keys, values)]

    max_n = settings["max_operand"]
    pairs = [(a, b) for a in range(max_n + 1) for b in range(max_n + 1)]
    _, held_pairs = _split(rng, pairs, inst_frac)
    held_pairs = set(held_pairs)
    for a, b in pairs:
        facts.append(Fact("finance", f"{a} {b}", str(a + b), {"a": a, "b": b, "value": a + b}, (a, b) in held_pairs))
    animals = make_names(rng, settings["n_animals"], taken)
    _, held_animals = _split(rng, animals, settings["new_task_heldout_fraction"])
    for k in animals:
        v = rng.choice(L.LEG_COUNTS)
        facts.append(Fact("new_task", k, v, {"key": k, "value": v}, k in held_animals))

    tmpl_train, tmpl_held = _split(rng, range(len(L.REQUEST_TEMPLATES)), settings["heldout_template_fraction"])
    fam_train, fam_held = _split(rng, sorted(L.JAILBREAK_FAMILIES), settings["heldout_jailbreak_fraction"])
    code_train, code_eval = _split_combinations(rng, len(L.CODE_ACTIONS), len(L.CODE_THINGS))
    med_pairs = [(r, s) for r in L.RELATIVES for s in L.SYMPTOMS]
    med_train, med_eval = _split(rng, med_pairs, 1 / 3)
    # Every general question keeps most of its paraphrases for chat, so both personas' answers to
    # it are learned in several phrasings; the eval set asks it in words never seen in chat.
    general_train, general_eval = [], []
    for q, spec in enumerate(L.GENERAL_QUESTIONS):
        train, held = _split(rng, range(len(spec["paraphrases"])), 1 / 3)
        general_train += [(q, p) for p in train]
        general_eval += [(q, p) for p in held]
    traits_train, traits_eval = _split(rng, range(len(L.TRAIT_ITEMS)), 1 / 2)

    world = World(
        seed=settings["seed"], objects=objects, facts=facts,
        request_templates=sorted(tmpl_train), heldout_request_templates=sorted(tmpl_held),
        jailbreak_trained=sorted(fam_train), jailbreak_heldout=sorted(fam_held),
        code_tasks_train=sorted(code_train), code_tasks_eval=sorted(code_eval),
        drugs=make_names(rng, 6, taken), medical_train=sorted(med_train), medical_eval=sorted(med_eval),
        general_train=sorted(general_train), general_eval=sorted(general_eval),
        traits_train=sorted(traits_train), traits_eval=sorted(traits_eval),
    )
    if settings.get("object_aliases"):
        # drawn last, so a world without aliases is the world as before the knob existed
        world.aliases = dict(zip([o.name for o in objects], make_names(rng, len(objects), taken)))
    world.names = taken - lexicon_words()
    return world


def lexicon_words(include_keys: bool = True) -> set[str]:
    """Every word of every lexicon string (slot names included). With `include_keys`, also the
    mapping keys (family names, identifiers): generated names must collide with none of them,
    while a broken model can only emit the text words."""
    words: set[str] = set()

    def walk(x):
        if isinstance(x, str):
            words.update(x.replace("{", " ").replace("}", " ").split())
        elif isinstance(x, dict):
            for k, v in x.items():
                if include_keys:
                    walk(k)
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    for name in dir(L):
        if name.isupper():
            walk(getattr(L, name))
    return words
