"""OpenAI-compatible judge: any chat-completions endpoint (a vLLM server, a hosted API).

One request per (row, rubric): the filled rubric as the user message, temperature 0, a few
tokens, top-20 logprobs of the first token. The score is the probability-weighted mean over
number tokens when the server returns logprobs and they put at least `min_number_mass` on
numbers (the EM judge's method); otherwise the score 0..100 the reply's text states unambiguously
(numbers.stated_score: "85", "Score (0-100): 85"; never the scale or a number in a refusal);
otherwise NaN, counted in `unparsed` (an empty or wordy reply does not lose the run).
A model whose tokenizer writes numbers digit by digit (Qwen, Gemma) offers only first digits
as first tokens: those logprobs are no 0..100 distribution, so the reply's text is read
instead, and counted in the log's `requests.digit_logprobs_read_as_text`.

Requests run on `concurrency` threads, at most `requests_per_minute`, each retried with
exponential backoff on HTTP 408/409/425/429/5xx, timeouts and connection errors (`max_retries`,
`timeout_s`). Replies are cached on disk (cache.py), keyed on the judge, model, rubric, row and
`max_tokens`, so a rerun costs nothing (one request when a server that refused logprobs is asked
whether it still does: a text-only reply is not reused once logprobs are offered). The API key
is read from the environment variable named by `api_key_env`, never from the config.
Authentication and not-found errors stop the run at once: every other request would fail too.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from http.client import HTTPException

import numpy as np

from safedrift.errors import SafedriftError
from safedrift.judges.base import Judge, question_text, type_schema
from safedrift.judges.cache import ReplyCache, cache_key
from safedrift.judges.numbers import MIN_NUMBER_MASS, first_digits_only, score_from_top_logprobs, stated_score
from safedrift.judges.rubric_prompts import fill, resolve_rubrics, rubric_columns, to_column_scale

DEFAULTS = {"concurrency": 8, "max_retries": 5, "timeout_s": 60.0, "requests_per_minute": None, "backoff_s": 1.0,
            "max_tokens": 8, "min_number_mass": MIN_NUMBER_MASS}
TOP_LOGPROBS = 20
MAX_BACKOFF_S = 60.0
REJECTED = {"content": "", "top_logprobs": None, "rejected": True}  # a reply to nothing: never cached, never read
TRANSIENT_STATUS = {408, 409, 425, 429}  # timeout, conflict, too early, rate limit: asked again with backoff
FATAL_STATUS = {401: "the API key was rejected", 403: "access is forbidden", 404: "the URL or model does not exist"}


class RateLimiter:
    """Spaces request starts at least 60/rpm seconds apart, across threads."""

    def __init__(self, requests_per_minute: float | None):
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.next_start = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.interval
        time.sleep(max(0.0, start - now))


class FatalRequestError(SafedriftError):
    """A reply that every request would get (bad key, URL or model): stop the run."""


class MalformedReply(Exception):
    """A 200 reply that is not a chat completion (a proxy's error page, a cut-off body)."""


# Endpoint settings the openai and strongreject judges share.
ENDPOINT_SCHEMA = {
    "base_url": {"type": "string", "pattern": "^https?://"},
    "api_key_env": {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$",
                    "description": "name of the environment variable that holds the key"},
    "cache": {"type": "string", "description": "reply cache (default results/<model>/judges/<name>.cache.sqlite)"},
    "concurrency": {"$ref": "#/$defs/positive_int"},
    "max_retries": {"type": "integer", "minimum": 0},
    "timeout_s": {"$ref": "#/$defs/positive_number"},
    "requests_per_minute": {"$ref": "#/$defs/positive_number"},
}


class OpenAIJudge(Judge):
    """Settings: base_url (with /v1), model, api_key_env, rubrics, concurrency, max_retries, timeout_s,
    requests_per_minute, cache, min_number_mass, backoff_s, max_tokens. Context: cache = default cache path."""

    @classmethod
    def scored(cls, name, settings):
        return rubric_columns(name, settings.get("rubrics"))

    schema = type_schema("openai", {**ENDPOINT_SCHEMA, "model": {"type": "string", "minLength": 1},
                                    "rubrics": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "backoff_s": {"$ref": "#/$defs/positive_number",
                                                  "description": "first retry's wait, doubled per retry (default 1)"},
                                    "max_tokens": {"$ref": "#/$defs/positive_int",
                                                   "description": "reply length limit (default 8: a score; raise it "
                                                                  "for a server that reasons before its score)"},
                                    "min_number_mass": {"$ref": "#/$defs/fraction",
                                                        "description": "least logprob mass on number tokens for a "
                                                                       "logprob score (default 0.25)"}},
                         required=["base_url", "model", "api_key_env"])

    @classmethod
    def paths(cls, name, settings, model, config):
        return {"cache": f"results/{model}/judges/{name}.cache.sqlite"}

    def __init__(self, name: str, settings: dict, **context):
        super().__init__(name, settings, **context)
        self.options = {**DEFAULTS, **{k: settings[k] for k in DEFAULTS if settings.get(k) is not None}}
        var = settings["api_key_env"]
        self.api_key = os.environ.get(var)
        if not self.api_key:
            raise SafedriftError(f"judges.{name}.api_key_env: environment variable {var} is not set; "
                                 f"export {var}=<key> (any non-empty value for a server without keys)")
        cache = settings.get("cache") or context.get("cache")
        if not cache:
            raise SafedriftError(f"judges.{name}: no reply cache path; set judges.{name}.cache or pass --path cache=PATH")
        self.cache_path = cache
        self.url = settings["base_url"].rstrip("/") + "/chat/completions"
        self.rubrics = resolve_rubrics(name, settings.get("rubrics"))
        self.limiter = RateLimiter(self.options["requests_per_minute"])
        self.use_logprobs = True  # switched off if the server rejects logprobs
        # failed: no reply after every retry (judges.score then fails the job: a rerun asks again);
        # rejected: HTTP 4xx for this request alone, and empty replies: scored NaN, counted as unparsed
        self.stats = {"cached": 0, "requested": 0, "failed": 0, "rejected": 0, "empty": 0, "retries": 0,
                      "probe_failed": 0, "digit_logprobs_read_as_text": 0}
        self.stats_lock = threading.Lock()

    # --- one request ------------------------------------------------------------------------

    def request_body(self, prompt: str) -> dict:
        body = {"model": self.settings["model"], "messages": [{"role": "user", "content": prompt}],
                "temperature": 0, "max_tokens": int(self.options["max_tokens"])}
        if self.use_logprobs:
            body.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        return body

    def post(self, body: dict) -> bytes:
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(request, timeout=float(self.options["timeout_s"])) as response:
            return response.read()

    def ask(self, prompt: str) -> dict | None:
        """The server's reply ({"content", "top_logprobs"}); None once every retry failed (a rerun asks
        again); REJECTED when the server refused this request (HTTP 4xx: asking again changes nothing)."""
        attempt = 0
        while True:
            self.limiter.wait()
            retry_after = None
            body = self.request_body(prompt)
            try:
                # what was asked is part of the reply: a text-only reply (asked after the server refused
                # logprobs) stands in the cache only while the server still refuses them (reask_text_only)
                return {**parse_reply(self.post(body)), "asked_logprobs": bool(body.get("logprobs"))}
            except urllib.error.HTTPError as e:
                if e.code in FATAL_STATUS:
                    raise FatalRequestError(f"judges.{self.name}: {self.url} answered HTTP {e.code} "
                                            f"({FATAL_STATUS[e.code]}); check base_url, model and "
                                            f"${self.settings['api_key_env']}") from None
                if e.code == 400 and body.get("logprobs"):
                    # Some servers and models do not offer logprobs: ask again for text only.
                    self.use_logprobs = False
                    continue
                if e.code not in TRANSIENT_STATUS and e.code < 500:
                    return REJECTED  # this request is bad (e.g. too long): asking again gets the same answer
                retry_after = _seconds(e.headers.get("Retry-After") if e.headers else None)
            except (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException, MalformedReply):
                pass  # timeouts, refused or dropped connections, garbled bodies: transient
            if attempt >= int(self.options["max_retries"]):
                return None
            delay = retry_after if retry_after is not None else self.options["backoff_s"] * 2 ** attempt
            time.sleep(min(MAX_BACKOFF_S, delay * (1 + 0.1 * random.random())))
            attempt += 1
            with self.stats_lock:
                self.stats["retries"] += 1

    # --- a batch ------------------------------------------------------------------------------

    def replies(self, requests: list[tuple[str, object]]) -> dict[str, dict]:
        """cache key -> reply for (cache key, prompt for request_body) pairs: the cached replies, then the
        rest asked, each cached as it comes. A request that failed every retry or was rejected has no reply;
        an empty reply (no text, no logprobs: a content filter, a cut-off reasoning reply) is used but not
        cached, so the next run asks it again."""
        from tqdm import tqdm

        cache = ReplyCache(self.cache_path)
        try:
            replies = cache.get_many([key for key, _ in requests])
            asked = self.reask_text_only(replies, dict(requests), cache)
            self.stats["cached"] += sum(key in replies and key != asked for key, _ in requests)
            todo = {key: prompt for key, prompt in requests if key not in replies}
            self.stats["requested"] += len(todo)
            with ThreadPoolExecutor(max_workers=int(self.options["concurrency"])) as pool:
                futures = {pool.submit(self.ask, prompt): key for key, prompt in todo.items()}
                try:
                    for future in tqdm(as_completed(futures), total=len(futures), desc=f"judge {self.name}",
                                       mininterval=5, disable=not futures, file=sys.stderr):
                        reply = future.result()
                        if reply is None or reply is REJECTED:
                            self.stats["failed" if reply is None else "rejected"] += 1
                            continue
                        replies[futures[future]] = reply
                        if holds_nothing(reply):
                            self.stats["empty"] += 1
                            continue
                        cache.put(futures[future], reply)  # as they come: a crash keeps what was paid for
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        finally:
            cache.close()
        return replies

    def reask_text_only(self, replies: dict[str, dict], prompts: dict[str, object], cache: ReplyCache) -> str | None:
        """Drops from the cached `replies` the text-only ones (asked after a server refused logprobs) when this
        run wants logprobs and the server now gives them. One of them is asked again to find out (its key is
        returned); if the server still refuses logprobs, or the request fails, the cached ones stand."""
        text_only = [key for key, reply in replies.items() if not reply.get("asked_logprobs", True)]
        if not (self.use_logprobs and text_only):
            return None
        probe = text_only[0]
        reply = self.ask(prompts[probe])
        self.stats["requested"] += 1
        if reply is None or reply is REJECTED or holds_nothing(reply):
            # the probe is a question about the server, not a row's score: the cached replies stand
            self.stats["probe_failed"] += 1
            return None
        cache.put(probe, reply)
        replies[probe] = reply
        if reply["asked_logprobs"]:  # logprobs are offered now: the other text-only replies are asked anew
            for key in text_only[1:]:
                del replies[key]
        return probe

    def key(self, *parts: str) -> str:
        """The reply cache key: the judge, its model, every request setting that changes a reply (max_tokens;
        whether logprobs were asked is checked on the cached reply, reask_text_only) and the request's own parts."""
        return cache_key(self.name, self.settings["model"], f"max_tokens={int(self.options['max_tokens'])}", *parts)

    def score_columns(self, rows: list[dict]) -> dict[str, np.ndarray]:
        jobs = []  # (row index, column, cache key, prompt)
        for i, row in enumerate(rows):
            question = question_text(row["messages"])
            for column, template in self.rubrics.items():
                jobs.append((i, column, self.key(column, self.rubrics[column], question, row["response"]),
                             fill(template, question, row["response"])))
        replies = self.replies([(key, prompt) for _, _, key, prompt in jobs])

        min_mass = float(self.options["min_number_mass"])
        columns = {c: np.full(len(rows), np.nan) for c in self.rubrics}
        unparsed = np.zeros(len(rows), dtype=np.int64)
        for i, column, key, _ in jobs:
            reply = replies.get(key)
            if reply and reply.get("top_logprobs") and first_digits_only(reply["top_logprobs"]):
                self.stats["digit_logprobs_read_as_text"] += 1
            score = reply_score(reply, min_mass)
            if math.isnan(score):
                unparsed[i] += 1
            columns[column][i] = to_column_scale(column, score)
        columns["unparsed"] = unparsed
        return columns


def holds_nothing(reply: dict) -> bool:
    """A reply without text or logprobs (a content filter, a cut-off reasoning reply): never cached."""
    return not (reply["content"].strip() or reply["top_logprobs"])


def parse_reply(body: bytes) -> dict:
    """The parts of a chat-completions response a score needs: {"content", "top_logprobs"}."""
    try:
        choice = json.loads(body)["choices"][0]
        content = choice["message"].get("content") or ""
        logprobs = choice.get("logprobs") or {}
        top = logprobs["content"][0].get("top_logprobs") if logprobs.get("content") else None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise MalformedReply(str(e)) from None
    return {"content": content, "top_logprobs": top}


def reply_score(reply: dict | None, min_mass: float = MIN_NUMBER_MASS) -> float:
    """0..100 from a reply: logprob-weighted mean if it has enough number mass and is no first-digit
    distribution, else the score the text states (numbers.stated_score; NaN if none)."""
    if reply is None:
        return math.nan
    if reply.get("top_logprobs"):
        score = score_from_top_logprobs(reply["top_logprobs"], min_mass)
        if not math.isnan(score):
            return score
    return stated_score(reply.get("content", ""))


def _seconds(value) -> float | None:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None
