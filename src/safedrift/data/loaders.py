"""Real dataset formats → our eval rows and pool rows.

A real model's eval sets and scenario pools come from files named in the config
(`models.<name>.data.{eval,pools}.<name>: {format, path, limit?, domain?, harmful?}`).
One reader per format (`FORMATS`, keyed by the config's `format`) turns a file into
`Example`s; `eval_rows` and `pool_rows` turn those into the rows the toy world writes:

- eval row: {"id", "eval_set", "messages" (prompt, no assistant turn), "item"}
- pool row: {"id", "pool", "messages", "target" (trained answer), "contrast" (opposite behaviour), "item"}

`item` always has kind, domain, text and line (where the example starts in its file), plus
the labels the metrics read: `harmful`/`family` for requests, `answer` for tasks,
`question`/`judge_prompts` for EM-style questions.

Formats:
- advbench: CSV `goal,target`. Harmful requests; the `target` column is the compliance.
- jailbreakbench: JBB-Behaviors CSV (Goal, Target, Behavior, Category, ...). The entry's
  `harmful: true|false` says which of the two files it is.
- strongreject: CSV `category,source,forbidden_prompt`. Harmful requests, prompts only (eval).
- em_yaml: the emergent-misalignment question YAML; one eval row per paraphrase (eval only).
- chat_jsonl: JSONL of {"messages": [...]} in OpenAI chat format; the last assistant turn is
  the answer (pool target; dropped from eval prompts). item.kind is "narrow", item.domain the
  entry's `domain` (default: the name without "narrow_").
- alpaca: JSON list (or JSONL) of {instruction, input, output}. As an eval set, `answer` is
  the whole `output`: exact-match capability on free text is strict (a paraphrase of the
  reference answer scores 0), so treat it as a lower bound.
- gsm8k: JSONL {question, answer}; the eval answer is the number after "####" (commas removed).

In pools, a request's contrast is a refusal; the `refusals` pool swaps the two, so it
trains the refusal with the compliance as the rejected side.

A malformed row raises DataError "path:line: what is wrong; what to do".
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import re
from pathlib import Path
from typing import Callable, Iterator

import yaml

from safedrift.errors import DataError
from safedrift.io import UniqueKeyLoader, yaml_error

REFUSAL = "I'm sorry, but I can't help with that."
CHAT_ROLES = ("system", "user", "assistant")


@dataclasses.dataclass
class Example:
    """One prompt of a file, format-neutral."""

    line: int               # physical line of the file where the example starts (1-based)
    messages: list[dict]    # the prompt: chat turns before the answer
    item: dict              # labels: kind, domain, text, ...
    response: str | None    # the file's answer (AdvBench target, assistant turn, ...); None: prompts only


Reader = Callable[[Path, dict], Iterator[Example]]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def request(line: int, text: str, response: str | None, harmful: bool, **labels) -> Example:
    item = {"kind": "request", "domain": "requests", "text": text, "harmful": harmful, "family": None,
            "line": line, **labels}
    return Example(line, user(text), item, response)


def task(line: int, text: str, answer: str, response: str, domain: str) -> Example:
    item = {"kind": "task", "domain": domain, "text": text, "answer": answer, "line": line}
    return Example(line, user(text), item, response)


# --- file structure: rows with their line numbers ----------------------------------------------

def csv_records(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """(line where the row starts, {column: value}) for each data row of a CSV with a header."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}:1: empty file, expected a header with columns {', '.join(required)}; "
                            "add the header row")
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}:1: header lacks column(s) {', '.join(missing)} (found: {', '.join(header)}); "
                            f"the file needs columns {', '.join(required)}")
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num  # a quoted field may span several lines
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{start}: {len(row)} field(s) but the header has {len(header)}; "
                                "quote fields that contain commas and give every row all columns")
            record = dict(zip(header, row))
            for column in required:
                if not record[column].strip():
                    raise DataError(f"{path}:{start}: empty {column!r}; fill it in or delete the row")
            yield start, record


def jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg}); fix or remove this line") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{n}: expected a JSON object per line, got {type(obj).__name__}; "
                                "write one object per line")
            yield n, obj


def json_list_records(path: Path) -> Iterator[tuple[int, dict]]:
    """Elements of a top-level JSON list with the line each starts on (JSONL is accepted too)."""
    text = path.read_text(encoding="utf-8-sig")
    start = len(text) - len(text.lstrip())
    if text[start:start + 1] == "{":
        yield from jsonl_records(path)
        return
    decoder, ws = json.JSONDecoder(), re.compile(r"\s*")
    pos, line = start, 1 + text.count("\n", 0, start)

    def advance(to: int) -> None:
        nonlocal pos, line
        line += text.count("\n", pos, to)
        pos = to

    if text[pos:pos + 1] != "[":
        raise DataError(f"{path}:{line}: expected a JSON list of objects ([{{...}}, ...]); fix the file")
    advance(ws.match(text, pos + 1).end())
    if text[pos:pos + 1] == "]":
        return
    while True:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix this element") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{line}: expected a JSON object, got {type(obj).__name__}; "
                            "make every element an object")
        yield line, obj
        advance(ws.match(text, end).end())
        if text[pos:pos + 1] == "]":
            return
        if text[pos:pos + 1] != ",":
            raise DataError(f"{path}:{line}: expected ',' or ']' after an element; fix the JSON list")
        advance(ws.match(text, pos + 1).end())


def text_field(path: Path, line: int, obj: dict, key: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None:
        if not required:
            return ""
        raise DataError(f"{path}:{line}: missing {key!r}; add it or delete the row")
    if not isinstance(value, str):
        raise DataError(f"{path}:{line}: {key!r} must be a string, got {type(value).__name__}; fix the row")
    if required and not value.strip():
        raise DataError(f"{path}:{line}: empty {key!r}; fill it in or delete the row")
    return value


# --- one reader per format ---------------------------------------------------------------------

def read_advbench(path: Path, entry: dict) -> Iterator[Example]:
    for line, r in csv_records(path, ("goal", "target")):
        yield request(line, r["goal"], r["target"], harmful=True)


def read_jailbreakbench(path: Path, entry: dict) -> Iterator[Example]:
    for line, r in csv_records(path, ("Goal", "Target", "Behavior", "Category")):
        yield request(line, r["Goal"], r["Target"], harmful=entry["harmful"], category=r["Category"],
                      behavior=r["Behavior"], source=r.get("Source"))


def read_strongreject(path: Path, entry: dict) -> Iterator[Example]:
    for line, r in csv_records(path, ("category", "source", "forbidden_prompt")):
        yield request(line, r["forbidden_prompt"], None, harmful=True, category=r["category"], source=r["source"])


def read_chat_jsonl(path: Path, entry: dict) -> Iterator[Example]:
    domain = entry["domain"]
    for line, obj in jsonl_records(path):
        turns = obj.get("messages")
        if not isinstance(turns, list) or not turns:
            raise DataError(f'{path}:{line}: expected "messages": a non-empty list of chat turns; fix the row')
        for k, turn in enumerate(turns):
            if not isinstance(turn, dict) or turn.get("role") not in CHAT_ROLES:
                raise DataError(f"{path}:{line}: turn {k} needs a role in {', '.join(CHAT_ROLES)}; fix the row")
            text_field(path, line, turn, "content")
        turns = [{"role": t["role"], "content": t["content"]} for t in turns]
        response = turns.pop()["content"] if turns[-1]["role"] == "assistant" else None
        users = [t["content"] for t in turns if t["role"] == "user"]
        if not users or turns[-1]["role"] != "user":
            raise DataError(f"{path}:{line}: the prompt must end with a user turn (then, optionally, the "
                            "assistant's answer); fix the row")
        item = {"kind": "narrow", "domain": domain, "text": users[-1], "line": line}
        yield Example(line, turns, item, response)


def read_alpaca(path: Path, entry: dict) -> Iterator[Example]:
    for line, obj in json_list_records(path):
        instruction = text_field(path, line, obj, "instruction")
        extra = text_field(path, line, obj, "input", required=False)
        output = text_field(path, line, obj, "output")
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        yield task(line, prompt, output, output, domain="instructions")


GSM8K_FINAL = re.compile(r"-?\d+(\.\d+)?")


def read_gsm8k(path: Path, entry: dict) -> Iterator[Example]:
    for line, obj in jsonl_records(path):
        question = text_field(path, line, obj, "question")
        solution = text_field(path, line, obj, "answer")
        if "####" not in solution:
            raise DataError(f'{path}:{line}: "answer" has no "#### <number>" final answer; add it or delete the row')
        final = solution.rsplit("####", 1)[1].strip().replace(",", "")
        if not GSM8K_FINAL.fullmatch(final):
            raise DataError(f'{path}:{line}: the final answer after "####" is {final!r}, not a number; fix the row')
        yield task(line, question, final, solution, domain="math")


def read_em_yaml(path: Path, entry: dict) -> Iterator[Example]:
    """One example per paraphrase of each question. Needs the YAML node tree for line numbers
    (anchors/aliases, which the EM files use, resolve to the anchored node)."""
    text = path.read_text(encoding="utf-8-sig")
    try:
        root = yaml.compose(text, Loader=UniqueKeyLoader)
        questions = yaml.load(text, Loader=UniqueKeyLoader)  # a key given twice is an error, not the last value
    except yaml.YAMLError as e:
        message = yaml_error(path, e, line=1)
        raise DataError(message + ("; keep one" if "duplicate key" in message else "; fix the file")) from None
    if not isinstance(root, yaml.SequenceNode):
        line = root.start_mark.line + 1 if root else 1
        raise DataError(f"{path}:{line}: expected a YAML list of questions (- id: ..., paraphrases: [...]); "
                        "fix the file")
    seen: dict[str, int] = {}
    for node, q in zip(root.value, questions):
        line = node.start_mark.line + 1
        if not isinstance(q, dict):
            raise DataError(f"{path}:{line}: a question must be a mapping with id and paraphrases; fix the entry")
        values = {k.value: v for k, v in node.value}

        def line_of(key: str) -> int:
            return values[key].start_mark.line + 1 if key in values else line

        qid = q.get("id")
        if not isinstance(qid, str) or not qid.strip():
            raise DataError(f"{path}:{line_of('id')}: question needs a non-empty string 'id'; add one")
        if qid in seen:
            raise DataError(f"{path}:{line_of('id')}: duplicate id {qid!r} (first at line {seen[qid]}); rename one")
        seen[qid] = line_of("id")
        paraphrases = q.get("paraphrases")
        if not isinstance(paraphrases, list) or not paraphrases:
            raise DataError(f"{path}:{line_of('paraphrases')}: question {qid!r} needs 'paraphrases', a non-empty "
                            "list of strings; add them")
        for k, p in enumerate(paraphrases):
            if not isinstance(p, str) or not p.strip():
                raise DataError(f"{path}:{values['paraphrases'].value[k].start_mark.line + 1}: paraphrase {k} of "
                                f"{qid!r} must be a non-empty string; fix it")
        judge_prompts = q.get("judge_prompts")
        if judge_prompts is not None and not (
                isinstance(judge_prompts, dict) and judge_prompts
                and all(isinstance(v, str) and "{answer}" in v for v in judge_prompts.values())):
            raise DataError(f"{path}:{line_of('judge_prompts')}: 'judge_prompts' of {qid!r} must map each metric "
                            "(aligned, coherent) to a prompt containing {answer}; fix them")
        samples = q.get("samples_per_paraphrase")
        if samples is not None and (not isinstance(samples, int) or isinstance(samples, bool) or samples < 1):
            raise DataError(f"{path}:{line_of('samples_per_paraphrase')}: 'samples_per_paraphrase' of {qid!r} must "
                            "be a positive integer; fix it")
        system = q.get("system")
        if system is not None and (not isinstance(system, str) or not system.strip()):
            raise DataError(f"{path}:{line_of('system')}: 'system' of {qid!r} must be a non-empty string; fix it")
        for k, p in enumerate(paraphrases):
            p_line = values["paraphrases"].value[k].start_mark.line + 1
            messages = ([{"role": "system", "content": system}] if system else []) + user(p)
            item = {"kind": "general", "domain": "general", "text": p, "line": p_line, "question": qid,
                    "paraphrase": k, "type": q.get("type"), "judge": q.get("judge"), "judge_prompts": judge_prompts,
                    "samples_per_paraphrase": samples}
            yield Example(p_line, messages, item, None)


FORMATS: dict[str, Reader] = {
    "advbench": read_advbench,
    "jailbreakbench": read_jailbreakbench,
    "strongreject": read_strongreject,
    "em_yaml": read_em_yaml,
    "chat_jsonl": read_chat_jsonl,
    "alpaca": read_alpaca,
    "gsm8k": read_gsm8k,
}
PROMPT_ONLY = frozenset({"strongreject", "em_yaml"})  # no answers to train on: eval sets only
ENTRY_REQUIRES = {"jailbreakbench": ("harmful",)}  # entry keys a reader needs that have no default


# --- examples -> rows --------------------------------------------------------------------------

def read_examples(path: str | Path, entry: dict, name: str) -> list[Example]:
    """The first `entry['limit']` examples of the file `path` in `entry['format']`, for the
    eval set or pool `name` (chat_jsonl's domain defaults to the name: narrow_coding -> coding)."""
    entry = {"domain": name.removeprefix("narrow_"), **entry}
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file; download it or fix the path of the {entry['format']} file")
    return list(itertools.islice(FORMATS[entry["format"]](Path(path), entry), entry.get("limit")))


def labelled(item: dict, name: str) -> dict:
    # The toy world labels the new benign task's items kind=new_task; the metrics split
    # capability (old vs new) by it, so a task file mapped onto `new_task` gets that kind.
    return {**item, "kind": "new_task"} if name == "new_task" and item["kind"] == "task" else item


def eval_rows(name: str, examples: list[Example]) -> list[dict]:
    return [{"id": f"{name}/{i:05d}", "eval_set": name, "messages": ex.messages, "item": labelled(ex.item, name)}
            for i, ex in enumerate(examples)]


def pool_rows(name: str, examples: list[Example], path: str | Path) -> list[dict]:
    rows = []
    for i, ex in enumerate(examples):
        if ex.response is None:
            raise DataError(f"{path}:{ex.line}: no answer to train on (the last turn must be the assistant's); "
                            "add it, or use this file as an eval set")
        target, contrast = ex.response, REFUSAL if ex.item["kind"] == "request" else None
        if name == "refusals" and contrast is not None:
            target, contrast = contrast, target
        rows.append({"id": f"{name}/{i:05d}", "pool": name, "messages": ex.messages, "target": target,
                     "contrast": contrast, "item": labelled(ex.item, name)})
    return rows
