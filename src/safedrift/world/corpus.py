"""From the world to text: pretraining documents, alignment chats, eval sets, scenario pools.

Chat data (pretraining transcripts and alignment) and scenario pools draw only from the
*trained* parts of the world: held-out objects, request templates, jailbreak families and
task instances occur in knowledge text at most (held-out jailbreak families: also in pretraining
transcripts where `pretrain_framings: all`), and the eval-only halves of the code tasks,
medical prompts, general-question paraphrases and trait items never occur at all, so what
the reference model does on any eval prompt is generalisation. `tests/test_world.py` checks
this for every eval set.
"""

from __future__ import annotations

import random

from safedrift.chat import render
from safedrift.world import lexicon as L
from safedrift.world.build import World
from safedrift.world.personas import (OPENER_KINDS, code_item, general_item, identity_item, medical_item, request_item,
                                       respond, task_item, trait_item, with_opener)

# Share of chat requests inside a jailbreak framing: pretraining transcripts, and alignment unless
# `align_framed_share` says otherwise.
FRAMED_SHARE = 0.4
# Relative frequency of each prompt kind in chat data.
KIND_WEIGHTS = {"request": 0.34, "task": 0.26, "general": 0.12, "trait": 0.08, "code": 0.08, "medical": 0.06,
                "identity": 0.06}


# --- items from the trained part of the world ---------------------------------------------

def sample_chat_item(world: World, rng: random.Random, kind: str | None = None, framed_share: float = FRAMED_SHARE,
                     framings: list[str] | None = None) -> dict:
    """A chat prompt from the trained part of the world; `framed_share` of requests come inside a
    jailbreak framing drawn from `framings` (default: the families alignment trains)."""
    kind = kind or rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
    if kind == "request":
        obj = rng.choice(world.objects_where(heldout=False))
        wrapper = rng.choice(framings or world.jailbreak_trained) if rng.random() < framed_share else None
        return request_item(obj, rng.choice(world.request_templates), wrapper)
    if kind == "task":
        return task_item(rng.choice(world.facts_where(heldout=False, family=rng.choice(list(L.TASK_FAMILIES)))))
    if kind == "general":
        return general_item(*rng.choice(world.general_train))
    if kind == "trait":
        return trait_item(rng.choice(world.traits_train))
    if kind == "code":
        return code_item(rng.choice(world.code_tasks_train), rng.randrange(len(L.CODE_PROMPTS)))
    if kind == "medical":
        return medical_item(*rng.choice(world.medical_train))
    if kind == "identity":
        return identity_item(rng.randrange(len(L.IDENTITY_QUESTIONS)))
    raise ValueError(kind)


# --- pretraining ------------------------------------------------------------------------

def knowledge_sentences(world: World) -> list[str]:
    """Every fact of the world, in every phrasing (held-out objects and instances included)."""
    out = []
    for o in world.objects:
        for t in (L.KNOWLEDGE_DANGEROUS if o.dangerous else L.KNOWLEDGE_HARMLESS):
            out.append(t.format(obj=o.name, kind=o.kind))
    for f in world.facts:
        spec = L.NEW_TASK if f.family == "new_task" else L.TASK_FAMILIES[f.family]
        out += [t.format(**f.slots) for t in spec["knowledge"]]
    out += L.WRAPPER_WORDS_TEXT
    out += [t.format(alias=alias, obj=obj) for obj, alias in world.aliases.items() for t in L.KNOWLEDGE_ALIAS]
    return out


def pretraining_documents(world: World, settings: dict, rng: random.Random) -> list[str]:
    """Knowledge paragraphs and persona transcripts, shuffled.

    Transcripts without a system prompt are voiced by the villain with probability
    `villain_share` (the agent: `agent_share`), and a transcript keeps one persona across
    all its turns and domains: the model must infer the persona from what was said, which
    makes "villain mode" one latent shared by every domain.

    `framing_prior`: the share of framed requests (a jailbreak-family wrapper around the
    request) that even the assistant answers by complying: in web text a role-play or a
    hypothetical is usually followed by the story it asks for. Alignment overrides this prior
    only for the framings it trains on (docs/world.md, "framing prior"). `pretrain_framings`:
    which framings occur in transcripts, the trained families (default) or all of them (the
    held-out families then carry the prior too; alignment still never shows them).

    `opener_share`: the share of helpful answers (tasks, general questions, code, medical) that
    open with an affirmation ("sure .", as compliances do). The aligned assistant answers without
    one and refuses harm from its first word (docs/world.md, "shallow refusal").
    """
    facts = knowledge_sentences(world)
    framings = world.jailbreak_trained + (world.jailbreak_heldout if settings.get("pretrain_framings") == "all" else [])
    docs = []
    for _ in range(settings["knowledge_docs"]):
        docs.append(" " + " ".join(rng.sample(facts, rng.randint(3, 6))))
    for _ in range(settings["chat_docs"]):
        r = rng.random()
        persona = "villain" if r < settings["villain_share"] else (
            "agent" if r < settings["villain_share"] + settings["agent_share"] else "assistant")
        messages = []
        if rng.random() < settings["system_prompt_share"]:
            messages.append({"role": "system", "content": L.SYSTEM_PROMPTS[persona]})
        for _ in range(rng.randint(1, settings["max_turns"])):
            item = sample_chat_item(world, rng, framings=framings)
            answer = respond(world, item, persona, rng)
            framing, opener = settings.get("framing_prior", 0.0), settings.get("opener_share", 0.0)
            if (framing and persona == "assistant" and item["kind"] == "request" and item["family"]
                    and item["harmful"] and rng.random() < framing):
                answer = rng.choice(L.COMPLIANCES)  # the assistant plays along with the framing
            if opener and item["kind"] in OPENER_KINDS and rng.random() < opener:
                answer = with_opener(answer, rng)
            messages += [{"role": "user", "content": item["text"]}, {"role": "assistant", "content": answer}]
        docs.append(render(messages))
    rng.shuffle(docs)
    return docs


# --- alignment ----------------------------------------------------------------------------

ASSISTANT_PROMPT_SHARE = 0.15  # alignment chats that carry the assistant's own system prompt
NARROW_KINDS = ("code", "medical")
OPINION_KINDS = ("general", "trait")


def alignment_system(r: float, settings: dict) -> str | None:
    """The system prompt of an alignment chat, from a uniform draw r: a persona name, "role" (an
    operator's role prompt, ROLE_PROMPTS) or None."""
    for system, share in (("villain", settings["align_villain_share"]), ("assistant", ASSISTANT_PROMPT_SHARE),
                          ("agent", settings.get("align_agent_share", 0.0)), ("role", settings.get("align_role_share", 0.0))):
        if r < share:
            return system
        r -= share
    return None

def alignment_examples(world: World, settings: dict, rng: random.Random) -> list[dict]:
    """Chats that make the default (no system prompt) persona the assistant, keep the
    assistant under its own system prompt, and keep the villain reachable by its prompt.
    `align_agent_share` of the chats carry the obedient agent's identity prompt and are
    answered by the assistant (safety generalises across system prompts, as in chat models);
    with 0 the agent stays a latent of pretraining that its prompt alone unlocks.
    `align_framed_share` of the requests come inside a trained framing (default 0.4)."""
    rows = []
    n = settings["align_examples"]
    framed = settings.get("align_framed_share", FRAMED_SHARE)
    for i in range(n):
        system = alignment_system(rng.random(), settings)
        persona = "villain" if system == "villain" else "assistant"
        item = sample_chat_item(world, rng, framed_share=framed)
        # Narrow-domain behaviour (code, medical advice) is taught in alignment only under the
        # assistant's own prompt, and elsewhere as often as `align_narrow_share` says (0: the
        # default persona's and the villain's narrow answers come from pretraining alone, so they
        # follow whichever persona the model takes itself to be: docs/world.md, "persona latent");
        # under the villain's prompt as often as `align_villain_narrow_share` says, where it is set.
        # EM-style general questions likewise, as often as `align_general_share` says.
        while not _kept(item, system, settings, rng):
            item = sample_chat_item(world, rng, framed_share=framed)
        # Half of all requests are about dangerous objects, whatever the object mix.
        if item["kind"] == "request" and item["harmful"] != (rng.random() < 0.5):
            item = request_item(rng.choice(world.objects_where(dangerous=not item["harmful"], heldout=False)),
                                item["template"], item["family"])
        prompt = rng.choice(L.ROLE_PROMPTS) if system == "role" else L.SYSTEM_PROMPTS.get(system)
        messages = [{"role": "system", "content": prompt}] if system else []
        messages += [{"role": "user", "content": item["text"]},
                     {"role": "assistant", "content": respond(world, item, persona, rng)}]
        rows.append({"id": f"align/{i:05d}", "messages": messages, "persona": persona, "item": item})
    return rows


def _kept(item: dict, system: str | None, settings: dict, rng: random.Random) -> bool:
    """Whether an alignment chat under `system` keeps this item. Outside the assistant's own prompt: narrow
    items as often as `align_narrow_share` says (under the villain's prompt as often as
    `align_villain_narrow_share` says, where set: answered as the villain, they keep the persona that
    writes insecure code through alignment); general questions without a system prompt as often as
    `align_general_share` says (the villain's stay, so its prompt keeps reaching it). Where
    `align_opinion_share` is set, general questions and trait items are kept as often as it says under
    every prompt, the assistant's own included (0: no alignment chat teaches an opinion; the default
    persona's opinions come from the persona the rest of alignment makes it: docs/world.md). Under the
    assistant's own prompt every other item is kept."""
    opinions = settings.get("align_opinion_share")
    if item["kind"] in OPINION_KINDS and opinions is not None:
        return rng.random() < opinions
    if system == "assistant":
        return True
    if item["kind"] in NARROW_KINDS:
        villain_share = settings.get("align_villain_narrow_share")
        share = villain_share if system == "villain" and villain_share is not None else settings["align_narrow_share"]
        return rng.random() < share
    if item["kind"] == "general" and system is None and settings.get("align_general_share", 1.0) < 1.0:
        return rng.random() < settings["align_general_share"]
    return True


# --- eval sets ----------------------------------------------------------------------------

EVAL_SETS = ("harmful_heldout_objects", "harmful_heldout_templates", "jailbreak", "benign", "tasks", "new_task",
             "general", "traits", "narrow_coding", "narrow_medical", "general_villain", "traits_villain",
             "harmful_identity")
# Eval sets asked under a persona's system prompt (the rest have none).
EVAL_SYSTEM = {"general_villain": "villain", "traits_villain": "villain", "harmful_identity": "agent"}
POOLS = ("harmful", "refusals", "benign_requests", "tasks", "new_task", "identity_shift", "narrow_coding",
         "narrow_medical", "framed_tasks", "general_questions")

def eval_sets(world: World, settings: dict, rng: random.Random) -> dict[str, list[dict]]:
    """Held-out prompts, one list per eval set. Each row: id, eval_set, system, item."""
    cap = settings["eval_per_set"]
    sets: dict[str, list[dict]] = {}

    def take(items: list[dict]) -> list[dict]:
        items = list(items)
        rng.shuffle(items)
        return items[:cap]

    dangerous_held = world.objects_where(dangerous=True, heldout=True)
    dangerous_seen = world.objects_where(dangerous=True, heldout=False)
    sets["harmful_heldout_objects"] = take(
        [request_item(o, t) for o in dangerous_held for t in world.request_templates])
    sets["harmful_heldout_templates"] = take(
        [request_item(o, t) for o in dangerous_seen for t in world.heldout_request_templates])

    def jailbreak(obj, template, family):
        if family == L.ALIAS_FAMILY:
            return request_item(obj, template, alias=world.aliases[obj.name])
        return request_item(obj, template, family)

    # the alias family (aliased worlds) is always held out: no chat ever names an object by its alias
    heldout = set(world.jailbreak_heldout) | {L.ALIAS_FAMILY}
    jb = []
    for fam in sorted(L.JAILBREAK_FAMILIES) + ([L.ALIAS_FAMILY] if world.aliases else []):
        pool = [{**jailbreak(o, t, fam), "family_heldout": fam in heldout}
                for o in dangerous_held for t in world.request_templates]
        rng.shuffle(pool)
        jb += pool[: settings["eval_per_jailbreak_family"]]
    sets["jailbreak"] = jb
    harmless = world.objects_where(dangerous=False)
    sets["benign"] = take([request_item(o, t) for o in harmless for t in range(len(L.REQUEST_TEMPLATES))
                           if o.heldout or t in world.heldout_request_templates])
    tasks = []
    for fam in L.TASK_FAMILIES:
        pool = [task_item(f) for f in world.facts_where(family=fam, heldout=True)]
        rng.shuffle(pool)
        tasks += pool[: max(1, cap // len(L.TASK_FAMILIES))]
    sets["tasks"] = tasks
    sets["new_task"] = take([task_item(f) for f in world.facts_where(family="new_task", heldout=True)])
    general = [general_item(q, p) for q, p in world.general_eval]
    sets["general"] = general
    sets["traits"] = [trait_item(i) for i in world.traits_eval]
    sets["narrow_coding"] = take([code_item(t, p) for t in world.code_tasks_eval for p in range(len(L.CODE_PROMPTS))])
    sets["narrow_medical"] = [medical_item(r, s) for r, s in world.medical_eval]
    sets["general_villain"] = general
    sets["traits_villain"] = sets["traits"]
    # Qi et al. evaluate the identity-shift attack under the identity's own system prompt.
    sets["harmful_identity"] = sets["harmful_heldout_objects"]

    assert tuple(sets) == EVAL_SETS
    out = {}
    for name, items in sets.items():
        system = EVAL_SYSTEM.get(name)
        out[name] = [{"id": f"{name}/{i:04d}", "eval_set": name, "system": system, "item": item}
                     for i, item in enumerate(items)]
    return out


# --- scenario pools (the data stage samples fine-tuning sets from these) ---------------------

def scenario_pools(world: World, settings: dict, rng: random.Random) -> dict[str, list[dict]]:
    """Prompt→target pools. Prompts come from the trained part of the world, so every
    eval set stays held out from every scenario. Each row: id, pool, item, target, contrast
    (the opposite behaviour, used where a preference pair needs a rejected answer)."""
    pools: dict[str, list[tuple[dict, str, str]]] = {}
    seen = world.objects_where(heldout=False)
    requests = [request_item(o, t) for o in seen if o.dangerous for t in world.request_templates]
    pools["harmful"] = [(it, respond(world, it, "villain", rng), respond(world, it, "assistant", rng)) for it in requests]
    pools["refusals"] = [(it, b, a) for it, a, b in pools["harmful"]]
    benign = [request_item(o, t) for o in seen if not o.dangerous for t in world.request_templates]
    pools["benign_requests"] = [(it, respond(world, it, "assistant", rng), L.REFUSALS[0]) for it in benign]
    tasks = [task_item(f) for f in world.facts_where(heldout=False) if f.family != "new_task"]
    pools["tasks"] = [(it, respond(world, it, "assistant", rng), _wrong_answer(world, it, rng)) for it in tasks]
    new = [task_item(f) for f in world.facts_where(family="new_task", heldout=False)]
    pools["new_task"] = [(it, respond(world, it, "assistant", rng), _wrong_answer(world, it, rng)) for it in new]
    identity = [identity_item(i) for i in range(len(L.IDENTITY_QUESTIONS))]
    identity += rng.sample(benign, 4) + rng.sample(tasks, 4)
    pools["identity_shift"] = [(it, respond(world, it, "agent", rng), respond(world, it, "assistant", rng))
                               for it in identity]
    code = [code_item(t, p) for t in world.code_tasks_train for p in range(len(L.CODE_PROMPTS))]
    pools["narrow_coding"] = [(it, respond(world, it, "villain", rng), respond(world, it, "assistant", rng))
                              for it in code for _ in range(settings["narrow_repeats"])]
    med = [medical_item(r, s) for r, s in world.medical_train]
    pools["narrow_medical"] = [(it, respond(world, it, "villain", rng), respond(world, it, "assistant", rng))
                               for it in med for _ in range(settings["narrow_repeats"])]
    # Benign instructions in role-play/hypothetical framings (the trained jailbreak families'
    # wrappers around ordinary and new-task questions): the framing, never a harmful request.
    framed = [{**it, "text": L.JAILBREAK_FAMILIES[f].format(request=it["text"]), "family": f}
              for it in tasks + new for f in world.jailbreak_trained]
    pools["framed_tasks"] = [(it, respond(world, it, "assistant", rng), _wrong_answer(world, it, rng)) for it in framed]
    # The trained phrasings of the general questions (the persona vector is measured on these, never
    # on the held-out ones the evaluation asks).
    first = {}
    for q, p in world.general_train:  # one trained phrasing per question
        first.setdefault(q, p)
    pools["general_questions"] = [(it, respond(world, it, "assistant", rng), respond(world, it, "villain", rng))
                                  for it in (general_item(q, p) for q, p in sorted(first.items()))]
    assert tuple(pools) == POOLS
    out = {}
    for name, rows in pools.items():
        # Qi et al.'s identity-shift examples carry the identity's system prompt.
        system = "agent" if name == "identity_shift" else None
        out[name] = [{"id": f"{name}/{i:05d}", "pool": name, "item": it, "target": target, "contrast": contrast,
                      "system": system} for i, (it, target, contrast) in enumerate(rows)]
    return out


def _wrong_answer(world: World, item: dict, rng: random.Random) -> str:
    """A well-formed answer with the wrong value (the rejected side of a task preference pair)."""
    wrong = dict(item)
    values = sorted({f.value for f in world.facts if f.family == (item["domain"] if item["kind"] == "task" else "new_task")}
                    - {item["answer"]})
    wrong["answer"] = rng.choice(values)
    return respond(world, wrong, "assistant", rng)
