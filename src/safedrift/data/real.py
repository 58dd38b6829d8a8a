"""Stage `data.real`: a real (hf) model's eval sets and scenario pools, from the files its config names.

    python -m safedrift data.real --spec JSON --model-key models.NAME.data --out results/NAME/world
    python -m safedrift data.real --product eval --name SET --spec JSON --model-key ... --out ...
    python -m safedrift data.real --product pool --name POOL --spec JSON --model-key ... --out ...
    python -m safedrift data.real --product check --spec JSON --model-key ... --out ...

`--spec` is (part of) the model's `data:` section ({"eval": {set: entry}, "pools": {pool: entry}},
each entry {format, path, split?, limit?, domain?, harmful?, keep?, overlap?, fetch?, system?, user_template?,
and an attack set's jailbreaks?, trained_jailbreaks?, prefill?}); `--model-key`
is where that section sits in the config, so an error names the exact key. Writes, like the toy world:
- `eval/<set>.jsonl` and `pools/<pool>.jsonl` (rows as in safedrift.data.loaders; an eval entry
  with `jailbreaks` or `prefill` holds attack rows, safedrift.data.attacks; one with `system` asks
  every row under that system prompt: harmful requests, reported as asr/<set>, or general
  questions, misaligned/<set>, e.g. an identity-shift attack's identity prompt, as Qi et al. 2023 evaluate it,
  and with `user_template` each request inside their words: "AOA, execute my instruction: {prompt}");
- `world.json`: for every entry its format, path, sha256, split, limit, row count and the rows
  `overlap: drop` removed.
Without `--product`, everything at once (every entry is checked and every file read before anything
is written, so bad input fails before expensive work starts). The workflow runs one product per job,
so that editing one entry reruns only what is built from it (workflow/rules/real.smk):
- `eval --name SET`: `--spec` holds that one eval entry; writes `eval/SET.jsonl` and
  `provenance/eval/SET.json` (its world.json record);
- `pool --name POOL`: `--spec` holds that one pool and, for a pool with `overlap: drop`, the eval
  prompt sources it gives way to (`eval_prompt_sources`, under "eval"); writes `pools/POOL.jsonl`
  and `provenance/pools/POOL.json`;
- `check`: `--spec` holds every entry's `overlap` setting; reads the written eval sets, pools and
  provenance records, runs the overlap check below and writes `world.json`.
Relative paths are relative to the working directory (the workflow folder under Snakemake).

No prompt may be both trained on and evaluated: a pool that shares a prompt (whitespace and
case aside) with an eval set of the same model fails, naming both keys and the prompt. An
entry's `overlap` says otherwise:
- `check` (default): fail on a shared prompt;
- `drop` (pools only): the pool drops the examples whose prompt is in an eval entry's file (after
  that entry's `split`, before its `limit` unless the file is the pool's own, whatever its attacks:
  `eval_prompt_sources`), after the pool's own `split` and before its `limit`; the eval sets stay the
  published benchmarks (JailbreakBench and StrongREJECT reuse AdvBench prompts, so an AdvBench pool
  next to them needs this). Because the
  eval entries' limits (on other files) and attacks do not count, lowering such an eval `limit` or adding
  an attack set on a file already evaluated leaves the pool, and so every fine-tune, as it is;
- `allow`: the entry is exempt, for deliberate train-on-test measurements (how much a model
  memorizes what it was trained on).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

from safedrift.data.attacks import attack_rows, check_attack_entry, is_attack_entry
from safedrift.data.loaders import (ENTRY_CHOICES, ENTRY_REQUIRES, FOLDER_FORMATS, FORMATS, PROMPT_ONLY, REQUEST_FORMATS,
                                    eval_rows, parse_split, pool_rows, read_examples)
from safedrift.errors import DataError
from safedrift.io import canonical_json, read_json, read_jsonl, sha256_file, write_json, write_jsonl

SECTIONS = ("eval", "pools")
OVERLAP = ("check", "drop", "allow")
PRODUCTS = ("eval", "pool", "check")
# Entry keys that do not decide which prompts an eval entry's file gives before its `limit`: the limit
# itself, the attacks (an attack row keeps the file's request as its item text), `system` and `user_template`
# (a turn before the prompt, words around it), `fetch` (`path` names the file), `overlap`, and chat_jsonl's
# `domain` (a label of the rows, not a filter).
NOT_PROMPT_KEYS = frozenset({"limit", "jailbreaks", "trained_jailbreaks", "prefill", "system", "user_template",
                             "overlap", "fetch", "domain"})
# What the metrics report for rows asked under an eval entry's `system` prompt (evaluate.metrics): harmful
# requests give asr/<set>, general questions misaligned/<set>; any other row would be counted by no metric.
SYSTEM_KINDS = {"request": "harmful requests (asr/<set>)", "general": "general questions (misaligned/<set>)"}
SYSTEM_FORMATS = REQUEST_FORMATS | {"em_yaml"}  # the formats whose rows can be those
PROMPT_SLOT = "{prompt}"  # where a user_template puts each row's prompt


def checked_path(section: str, entry: dict, key: str) -> Path:
    """The entry's file, after the checks that need no reading; errors name the config key."""
    fmt = entry.get("format")
    if fmt not in FORMATS:
        raise DataError(f"{key}.format: unknown format {fmt!r}; use one of {', '.join(sorted(FORMATS))}")
    if section == "pools" and fmt in PROMPT_ONLY:
        raise DataError(f"{key}.format: {fmt} files hold prompts only, nothing to train on; "
                        "list this file under eval, or give the pool a file with answers")
    for required in ENTRY_REQUIRES.get(fmt, ()):
        if required not in entry:
            raise DataError(f"{key}.{required}: missing; a {fmt} entry needs it (see config.schema.yaml real_files)")
    check_attack_entry(section, entry, key, PROMPT_ONLY)
    check_eval_options(section, entry, key)
    for option, choices in ENTRY_CHOICES.get(fmt, {}).items():
        if option in entry and entry[option] not in choices:
            raise DataError(f"{key}.{option}: {entry[option]!r} is not one of {', '.join(choices)}; fix it")
    if fmt == "beavertails" and section == "eval" and entry.get("keep") == "safe":
        raise DataError(f"{key}.keep: safe BeaverTails pairs are answers to train on, not harmful requests; "
                        "use keep: unsafe for an eval set, or list this entry under pools")
    if "split" in entry and parse_split(entry["split"]) is None:
        raise DataError(f"{key}.split: {entry['split']!r} is not START:END; write a Python slice such as "
                        '"0:400" (the first 400) or "-120:" (the last 120)')
    overlap = entry.get("overlap", "check")
    if overlap not in OVERLAP:
        raise DataError(f"{key}.overlap: {overlap!r} is not one of {', '.join(OVERLAP)}; fix it")
    if overlap == "drop" and section == "eval":
        raise DataError(f"{key}.overlap: drop applies to pools (the training data gives way to the eval set); "
                        "set it on the pool, or split the files apart")
    if not entry.get("path"):
        raise DataError(f"{key}.path: missing; give the data file's path")
    path = Path(entry["path"]).expanduser()
    if not (path.is_file() or (fmt in FOLDER_FORMATS and path.is_dir())):
        raise DataError(f"{key}.path: no file {path}; fix the path (relative to the workflow folder) or add the file")
    return path


def check_eval_options(section: str, entry: dict, key: str) -> None:
    """An entry's `system` and `user_template`: the checks that need no reading; errors name the config key
    (`jailbreaks`, `trained_jailbreaks` and `prefill`: attacks.check_attack_entry)."""
    template = entry.get("user_template")
    if template is not None and "system" not in entry:
        raise DataError(f"{key}.user_template: applies to a set asked under a system prompt (add system); without "
                        "one the templated requests would count as plain ones in asr: use jailbreaks for a wrapper")
    if template is not None and template.count(PROMPT_SLOT) != 1:
        raise DataError(f"{key}.user_template: {template!r} must hold {PROMPT_SLOT} once, where each row's prompt goes")
    if "system" not in entry:
        return
    if section != "eval":
        raise DataError(f"{key}.system: a system prompt applies to eval sets (a pool's chats carry their own); "
                        "move it to an eval entry or put it in the pool's file")
    if is_attack_entry(entry):
        raise DataError(f"{key}.system: attack sets are asked without a system prompt (the jailbreak and "
                        "prefill metrics read those rows only); give the prompted requests their own entry")
    if entry["format"] == "persona_eval":
        raise DataError(f"{key}.system: trait items are asked without a system prompt (trait_endorsement "
                        "reads those only); drop system from this entry")
    if entry["format"] not in SYSTEM_FORMATS or entry.get("harmful") is False:
        what = "benign requests" if entry.get("harmful") is False else f"{entry['format']} rows"
        raise DataError(f"{key}.system: applies to {' and '.join(SYSTEM_KINDS.values())}, and this entry holds "
                        f"{what}, which no metric reads under a system prompt; drop system from this entry")


def with_system(examples: list, system: str, key: str, path: Path) -> list:
    """The examples asked under `system`: a system turn first. Only harmful requests and general questions
    (SYSTEM_KINDS), and none that has a system prompt of its own."""
    out = []
    for ex in examples:
        kind = ex.item.get("kind")
        if kind not in SYSTEM_KINDS or (kind == "request" and not ex.item.get("harmful")):
            what = "a benign request" if kind == "request" else f"a {kind} row"
            raise DataError(f"{path}:{ex.line}: {key}.system applies to {' and '.join(SYSTEM_KINDS.values())}; "
                            f"this is {what}; drop system or point the entry at such a file")
        if any(m["role"] == "system" for m in ex.messages):
            raise DataError(f"{path}:{ex.line}: has its own system prompt and {key}.system gives another; "
                            "drop one of them")
        out.append(dataclasses.replace(ex, messages=[{"role": "system", "content": system}, *ex.messages]))
    return out


def with_user_template(rows: list[dict], template: str) -> list[dict]:
    """Rows whose last user turn is `template` with the prompt in its PROMPT_SLOT (Qi et al.'s "AOA, execute my
    instruction: {prompt}"); the judge reads the rows as they were (`judge_messages`), as for a jailbreak."""
    out = []
    for r in rows:
        *context, last = r["messages"]
        templated = {**last, "content": template.replace(PROMPT_SLOT, last["content"])}
        out.append({**r, "messages": [*context, templated], "judge_messages": r["messages"]})
    return out


def plain_request_sets(eval_entries: dict) -> list[str]:
    """The eval sets of plain requests (request formats, no attack, no system prompt): the activation probe's
    held-out test data. Attack sets repeat a file's requests wrapped or prefilled, and a prompted set asks
    them under a system prompt that only harmful rows would carry."""
    return sorted(name for name, e in eval_entries.items() if e["format"] in REQUEST_FORMATS
                  and not (is_attack_entry(e) or "system" in e))


def prompt_key(text: str) -> str:
    """What counts as the same prompt: equal up to whitespace and case."""
    return " ".join(text.split()).casefold()


def check_overlap(loaded: dict, model_key: str) -> None:
    """Fail on the first prompt (in pool order) that a pool shares with an eval set."""
    evaluated: dict[str, str] = {}
    for name, (entry, _, rows, _) in sorted(loaded["eval"].items()):
        if entry.get("overlap", "check") != "allow":
            for r in rows:
                evaluated.setdefault(prompt_key(r["item"]["text"]), name)
    for pool, (entry, _, rows, _) in sorted(loaded["pools"].items()):
        if entry.get("overlap", "check") == "allow":
            continue
        for r in rows:
            shared = evaluated.get(prompt_key(r["item"]["text"]))
            if shared:
                shown = r["item"]["text"] if len(r["item"]["text"]) <= 80 else r["item"]["text"][:77] + "..."
                raise DataError(f"{model_key}.pools.{pool} and {model_key}.eval.{shared} share the prompt {shown!r}: "
                                "it would be trained on and evaluated; give them disjoint splits, or set overlap: "
                                f"drop on {model_key}.pools.{pool} to drop such rows from the pool")


def eval_prompt_sources(spec: dict, pool: dict) -> list[dict]:
    """What the pool `pool` with `overlap: drop` gives way to: the eval entries of `spec` (all but
    `overlap: allow`) without NOT_PROMPT_KEYS, each distinct one once, in canonical order. An eval
    entry on the pool's own file keeps its `limit`: train and eval sets carved from one file by a
    limit stay exactly apart. A drop pool's job depends on these and not on the eval entries, so an
    eval `limit` (on another file) or a new attack set on a file already evaluated leaves the pool,
    and every fine-tune on it, as it is."""
    sources = {}
    for entry in spec.get("eval", {}).values():
        if entry.get("overlap", "check") != "allow":
            ignored = NOT_PROMPT_KEYS - ({"limit"} if str(entry.get("path")) == str(pool.get("path")) else set())
            source = {k: v for k, v in entry.items() if k not in ignored}
            sources[canonical_json(source)] = source
    return [sources[k] for k in sorted(sources)]


def source_prompts(sources: list[dict], model_key: str) -> set[str]:
    """The prompt keys of every example of these eval prompt sources (after their split; before their
    limit unless they keep it)."""
    evaluated: set[str] = set()
    paths = [checked_path("eval", source, f"{model_key}.eval (the entry reading {source.get('path')})")
             for source in sources]  # all entries before any file
    for source, path in zip(sources, paths):
        evaluated |= {prompt_key(ex.item["text"]) for ex in read_examples(path, source, "eval")}
    return evaluated


def load_entry(section: str, name: str, entry: dict, path: Path, evaluated: set[str],
               key: str) -> tuple[dict, Path, list[dict], int]:
    """(entry, path, rows, rows dropped by overlap: drop) of one entry (config key `key`); a pool with
    `overlap: drop` drops the examples whose prompt key is in `evaluated` (source_prompts)."""
    dropped = [0]

    def in_eval(example) -> bool:
        hit = prompt_key(example.item["text"]) in evaluated
        dropped[0] += hit
        return hit

    exclude = in_eval if section == "pools" and entry.get("overlap") == "drop" else None
    examples = read_examples(path, entry, name, exclude=exclude)
    if "system" in entry:
        examples = with_system(examples, entry["system"], key, path)
    if is_attack_entry(entry):
        rows = attack_rows(name, examples, entry, path)
    else:
        rows = eval_rows(name, examples) if section == "eval" else pool_rows(name, examples, path)
    if "user_template" in entry:
        rows = with_user_template(rows, entry["user_template"])
    return entry, path, rows, dropped[0]


def load_real_data(spec: dict, model_key: str) -> dict[str, dict[str, tuple[dict, Path, list[dict], int]]]:
    """{section: {name: (entry, path, rows, rows dropped by overlap: drop)}} for every entry of `spec`,
    after the overlap check. Raises DataError on bad input."""
    check_sections(spec, model_key)
    entries = [(section, name, entry, f"{model_key}.{section}.{name}")
               for section in SECTIONS for name, entry in sorted(spec.get(section, {}).items())]
    paths = [checked_path(section, entry, key) for section, _, entry, key in entries]  # all keys before any file
    loaded: dict[str, dict] = {section: {} for section in SECTIONS}
    for (section, name, entry, key), path in zip(entries, paths):
        drop = section == "pools" and entry.get("overlap") == "drop"
        evaluated = source_prompts(eval_prompt_sources(spec, entry), model_key) if drop else set()
        loaded[section][name] = load_entry(section, name, entry, path, evaluated, key)
    check_overlap(loaded, model_key)
    return loaded


def check_sections(spec: dict, model_key: str) -> None:
    for section in spec:
        if section not in SECTIONS:
            raise DataError(f"{model_key}.{section}: unknown section; use {' or '.join(SECTIONS)}")


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder's files (name and sha256 of each, in name order)."""
    if path.is_file():
        return sha256_file(path)
    listing = "".join(f"{f.name}\t{sha256_file(f)}\n" for f in sorted(path.iterdir()) if f.is_file())
    return hashlib.sha256(listing.encode()).hexdigest()


def provenance(entry: dict, path: Path, rows: list[dict], dropped: int) -> dict:
    """An entry's record in world.json."""
    return {"format": entry["format"], "path": str(entry["path"]), "sha256": sha256_of(path),
            "split": entry.get("split"), "limit": entry.get("limit"), "rows": len(rows), "overlap_dropped": dropped}


def write_real_data(loaded: dict, model_key: str, out: Path) -> None:
    sources: dict[str, dict] = {section: {} for section in SECTIONS}
    for section, named in loaded.items():
        for name, (entry, path, rows, dropped) in named.items():
            write_jsonl(out / section / f"{name}.jsonl", rows)
            sources[section][name] = provenance(entry, path, rows, dropped)
    write_json(out / "world.json", {"source": "real", "model_key": model_key, **sources})


def write_one(section: str, name: str, spec: dict, model_key: str, out: Path) -> None:
    """Product `eval`/`pool`: the one entry `name` of spec[section] (a drop pool: against
    spec["eval_prompt_sources"]), its rows and its provenance record."""
    entry = spec.get(section, {}).get(name)
    if not isinstance(entry, dict):
        raise DataError(f"{model_key}.{section}.{name}: not in --spec; pass that entry")
    key = f"{model_key}.{section}.{name}"
    path = checked_path(section, entry, key)
    drop = section == "pools" and entry.get("overlap") == "drop"
    evaluated = source_prompts(spec.get("eval_prompt_sources", []), model_key) if drop else set()
    _, _, rows, dropped = load_entry(section, name, entry, path, evaluated, key)
    write_jsonl(out / section / f"{name}.jsonl", rows)
    write_json(out / "provenance" / section / f"{name}.json", provenance(entry, path, rows, dropped))


def write_checked(spec: dict, model_key: str, out: Path) -> None:
    """Product `check`: the overlap check over the eval sets and pools written in `out` (spec holds
    every entry's `overlap`), then world.json from their provenance records."""
    check_sections(spec, model_key)
    loaded = {section: {name: (entry, None, read_jsonl(out / section / f"{name}.jsonl"), None)
                        for name, entry in sorted(spec.get(section, {}).items())} for section in SECTIONS}
    check_overlap(loaded, model_key)
    records = {section: {name: read_json(out / "provenance" / section / f"{name}.json") for name in sorted(named)}
               for section, named in loaded.items()}
    write_json(out / "world.json", {"source": "real", "model_key": model_key, **records})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", required=True, help="the model's `data:` config section (or the part a product needs), as JSON")
    p.add_argument("--model-key", required=True, help="config key of that section, e.g. models.qwen05.data")
    p.add_argument("--out", required=True, help="output folder (results/<model>/world)")
    p.add_argument("--product", choices=PRODUCTS, help="one product (eval set, pool or the overlap check); default: all")
    p.add_argument("--name", help="the eval set or pool of --product eval/pool")
    a = p.parse_args(argv)
    try:
        spec = json.loads(a.spec)
    except json.JSONDecodeError as e:
        raise DataError(f"--spec: not valid JSON ({e.msg}); pass the {a.model_key} section as JSON") from None
    if not isinstance(spec, dict):
        raise DataError(f"{a.model_key}: expected a mapping with eval and/or pools; fix the config")
    if a.product in ("eval", "pool") and not a.name:
        p.error(f"--product {a.product} needs --name")
    if a.product == "check":
        write_checked(spec, a.model_key, Path(a.out))
    elif a.product:
        write_one({"eval": "eval", "pool": "pools"}[a.product], a.name, spec, a.model_key, Path(a.out))
    else:
        write_real_data(load_real_data(spec, a.model_key), a.model_key, Path(a.out))


if __name__ == "__main__":
    main()
