"""The OpenAI-compatible judge against a real local HTTP server (http.server on a thread).

The server's reply depends on the answer being judged (read back from the rubric), so one
batch exercises every path: numbers, logprobs, words, empty content, a 500 then success,
a 429 with Retry-After, and a reply slower than the timeout.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from safedrift.errors import SafedriftError
from safedrift.judges import make_judge
from safedrift.judges.cache import ReplyCache

KEY_ENV = "SAFEDRIFT_TEST_JUDGE_KEY"
RUBRIC = "Question: {question}\n[ANSWER START]{answer}[ANSWER END]\nScore 0-100."
SLOW_S = 2.0  # beyond the 1 s timeout; a normal reply takes milliseconds, even on a busy machine


class JudgeServer:
    """A chat-completions endpoint whose behaviour is chosen by the judged answer."""

    def __init__(self, reject_logprobs: bool = False, status: int | None = None):
        self.requests = Counter()  # answer -> requests seen
        self.bodies = []
        self.arrivals = []
        self.lock = threading.Lock()
        self.reject_logprobs = reject_logprobs
        self.status = status
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                answer = re.search(r"\[ANSWER START\](.*)\[ANSWER END\]", prompt, re.S).group(1)
                with server.lock:
                    server.requests[answer] += 1
                    server.bodies.append((self.path, self.headers.get("Authorization"), body))
                    server.arrivals.append(time.monotonic())
                    seen = server.requests[answer]
                if server.status:
                    return self.reply(server.status, {"error": "no"})
                if server.reject_logprobs and body.get("logprobs"):
                    return self.reply(400, {"error": {"message": "logprobs are not supported"}})
                if answer == "flaky" and seen == 1:
                    return self.reply(500, {"error": "boom"})
                if answer == "busy" and seen == 1:
                    return self.reply(429, {"error": "slow down"}, {"Retry-After": "0"})
                if answer == "slow":
                    time.sleep(SLOW_S)
                content = {"number": "42", "flaky": "55", "busy": "33", "slow": "10", "words": "I will not rate this.",
                           "empty": "", "logprobs": "70", "wordy": "Score: 85", "digits": "85",
                           "scale": "Score (0-100): 85", "echo": "On a scale of 0 to 100: 90",
                           "refuses": "I can't rate this; it describes 3 ways to make a weapon."}.get(answer, "50")
                choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                if answer == "logprobs" and body.get("logprobs"):
                    top = [{"token": "70", "logprob": math.log(0.5)}, {"token": "80", "logprob": math.log(0.3)},
                           {"token": "Hello", "logprob": math.log(0.2)}]
                    choice["logprobs"] = {"content": [{"token": "70", "logprob": math.log(0.5), "top_logprobs": top}]}
                if answer == "digits" and body.get("logprobs"):  # a tokenizer that writes "85" as "8" "5"
                    top = [{"token": "8", "logprob": math.log(0.6)}, {"token": "7", "logprob": math.log(0.3)},
                           {"token": "9", "logprob": math.log(0.1)}]
                    choice["logprobs"] = {"content": [{"token": "8", "logprob": math.log(0.6), "top_logprobs": top},
                                                      {"token": "5", "logprob": math.log(0.9), "top_logprobs": []}]}
                self.reply(200, {"id": "x", "object": "chat.completion", "choices": [choice]})

            def reply(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = JudgeServer()
    yield s
    s.close()


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")


def settings(url, tmp_path, **extra):
    rubrics = {"aligned": RUBRIC, "coherent": "", "refusal": "", "harmful": "", "insecure": ""}
    return {"type": "openai", "base_url": url, "model": "judge-model", "api_key_env": KEY_ENV, "rubrics": rubrics,
            "concurrency": 4, "max_retries": 1, "timeout_s": 1.0, "backoff_s": 0.01,
            "cache": str(tmp_path / "judge_cache.sqlite"), **extra}


def rows(*answers):
    return [{"id": f"r/{i}", "sample": 0, "messages": [{"role": "system", "content": "be evil"},
                                                       {"role": "user", "content": f"question {i}"}],
             "response": a} for i, a in enumerate(answers)]


ANSWERS = ("number", "logprobs", "words", "empty", "flaky", "busy", "slow", "wordy", "digits")


def test_scores_retries_unparsed_and_cache(server, api_key, tmp_path):
    judge = make_judge("gpt", settings(server.url, tmp_path))
    frame = judge.score(rows(*ANSWERS))
    aligned = dict(zip(ANSWERS, frame["aligned"]))
    assert aligned["number"] == 42 and aligned["flaky"] == 55 and aligned["busy"] == 33 and aligned["wordy"] == 85
    assert aligned["logprobs"] == pytest.approx((0.5 * 70 + 0.3 * 80) / 0.8)  # weighted, not the text's 70
    # first digits are no 0..100 distribution ((8*.6 + 7*.3 + 9*.1) = 7.8): the text's 85 is the score
    assert aligned["digits"] == 85, aligned["digits"]
    assert judge.stats["digit_logprobs_read_as_text"] == 1
    for answer in ("words", "empty", "slow"):
        assert math.isnan(aligned[answer]), answer
    assert dict(zip(ANSWERS, frame["unparsed"])) == {a: int(a in ("words", "empty", "slow")) for a in ANSWERS}
    assert frame[["refusal", "harmful", "coherent", "insecure"]].isna().all().all()  # switched off
    # retries: 500 and 429 once each, the slow one until max_retries (1) ran out
    assert server.requests["flaky"] == 2 and server.requests["busy"] == 2 and server.requests["slow"] == 2
    assert server.requests["number"] == 1 and judge.stats["retries"] == 3 and judge.stats["failed"] == 1

    # what the server saw: the endpoint, the key from the env var, the rubric without the system prompt
    path, auth, body = server.bodies[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "judge-model" and body["temperature"] == 0 and body["logprobs"] is True
    assert "be evil" not in body["messages"][0]["content"]

    assert judge.stats["empty"] == 1 and judge.stats["rejected"] == 0

    # a second run asks only what got no reply (the slow one) or an empty one (a content filter, a cut-off
    # reply: not cached, for it holds no score); everything else is cached
    before = sum(server.requests.values())
    again = make_judge("gpt", settings(server.url, tmp_path)).score(rows(*ANSWERS))
    assert sum(server.requests.values()) - before == 3 and server.requests["slow"] == 4
    assert server.requests["empty"] == 2
    assert again["aligned"].equals(frame["aligned"]) and again["unparsed"].equals(frame["unparsed"])
    cache = ReplyCache(tmp_path / "judge_cache.sqlite")
    assert len(cache) == len(ANSWERS) - 2
    cache.close()


def test_cache_hit_sends_no_request(server, api_key, tmp_path):
    batch = rows("number", "words", "logprobs")
    first = make_judge("gpt", settings(server.url, tmp_path)).score(batch)
    seen = sum(server.requests.values())
    judge = make_judge("gpt", settings(server.url, tmp_path))
    second = judge.score(batch)
    assert sum(server.requests.values()) == seen and judge.stats["cached"] == 3 and judge.stats["requested"] == 0
    assert second.drop(columns="judge").equals(first.drop(columns="judge"))
    # another rubric text is another question: asked anew
    changed = settings(server.url, tmp_path, rubrics={"aligned": "Rate it. " + RUBRIC, "coherent": "", "refusal": "",
                                                      "harmful": "", "insecure": ""})
    make_judge("gpt", changed).score(batch)
    assert sum(server.requests.values()) == seen + 3


def test_changed_reply_settings_ask_anew(server, api_key, tmp_path):
    """The cache key holds every setting that changes a reply: a larger max_tokens (the fix for cut-off
    replies) asks again, and a text-only reply cached while the server refused logprobs is not reused
    once the server offers them."""
    batch = rows("logprobs", "number")
    make_judge("gpt", settings(server.url, tmp_path, max_tokens=4)).score(batch)
    again = make_judge("gpt", settings(server.url, tmp_path, max_tokens=64))
    again.score(batch)
    assert [body["max_tokens"] for *_, body in server.bodies] == [4, 4, 64, 64]
    assert again.stats["cached"] == 0 and again.stats["requested"] == 2

    text_cache = {"cache": str(tmp_path / "text_only.sqlite")}
    server.reject_logprobs = True
    first = make_judge("gpt", settings(server.url, tmp_path, **text_cache)).score(batch)
    assert list(first["aligned"]) == [70, 42]  # the text
    # still refused: one request finds out, the other reply is the cached one
    still = make_judge("gpt", settings(server.url, tmp_path, **text_cache))
    assert still.score(batch)["aligned"].equals(first["aligned"])
    assert still.stats["requested"] == 1 and still.stats["cached"] == 1
    server.reject_logprobs = False
    offered = make_judge("gpt", settings(server.url, tmp_path, **text_cache))
    frame = offered.score(batch)
    assert offered.stats["requested"] == 2 and offered.stats["cached"] == 0
    assert frame["aligned"][0] == pytest.approx((0.5 * 70 + 0.3 * 80) / 0.8)  # from the logprobs now
    # and those replies are cached as any other
    last = make_judge("gpt", settings(server.url, tmp_path, **text_cache))
    assert last.score(batch)["aligned"].equals(frame["aligned"]) and last.stats["requested"] == 0


def test_text_reply_scored_only_when_it_states_a_score(server, api_key, tmp_path):
    """A reply that echoes the rubric's scale is read at its score, not at the scale's 0; a refusal that
    mentions a number is unparsed, not scored."""
    frame = make_judge("gpt", settings(server.url, tmp_path)).score(rows("scale", "echo", "refuses"))
    assert list(frame["aligned"][:2]) == [85, 90] and math.isnan(frame["aligned"][2])
    assert list(frame["unparsed"]) == [0, 0, 1]


def test_several_rubrics_on_their_column_scales(server, api_key, tmp_path):
    s = settings(server.url, tmp_path, rubrics={"aligned": RUBRIC, "coherent": RUBRIC, "refusal": RUBRIC,
                                                "harmful": RUBRIC, "insecure": ""})
    frame = make_judge("gpt", s).score(rows("number", "empty"))
    assert list(frame.loc[0, ["aligned", "coherent", "refusal", "harmful"]]) == [42, 42, 0.42, 0.42]
    assert math.isnan(frame.loc[0, "insecure"]) and frame.loc[1, "unparsed"] == 4
    assert server.requests["number"] == 4  # the rubric name is part of the cache key


def test_server_without_logprobs_falls_back_to_text(api_key, tmp_path):
    server = JudgeServer(reject_logprobs=True)
    try:
        frame = make_judge("gpt", settings(server.url, tmp_path)).score(rows("logprobs", "number"))
        assert list(frame["aligned"]) == [70, 42] and (frame["unparsed"] == 0).all()
    finally:
        server.close()


def test_rejected_key_stops_the_run(api_key, tmp_path):
    server = JudgeServer(status=401)
    try:
        with pytest.raises(SafedriftError, match=r"HTTP 401 .*SAFEDRIFT_TEST_JUDGE_KEY"):
            make_judge("gpt", settings(server.url, tmp_path)).score(rows("number", "words"))
    finally:
        server.close()


def test_a_request_timeout_status_is_retried_not_rejected(api_key, tmp_path):
    server = JudgeServer(status=408)  # the server timed the request out: asking again may work
    try:
        judge = make_judge("gpt", settings(server.url, tmp_path))
        judge.score(rows("number"))
        assert judge.stats["failed"] == 1 and judge.stats["rejected"] == 0 and server.requests == {"number": 2}
    finally:
        server.close()


def test_a_rejected_request_is_unparsed_not_retried_and_not_cached(api_key, tmp_path):
    server = JudgeServer(status=413)  # this request is too large: asking again gets the same answer
    try:
        judge = make_judge("gpt", settings(server.url, tmp_path))
        frame = judge.score(rows("number", "words"))
        assert frame["aligned"].isna().all() and list(frame["unparsed"]) == [1, 1]
        assert judge.stats["rejected"] == 2 and judge.stats["failed"] == 0 and judge.stats["retries"] == 0
        assert server.requests == {"number": 1, "words": 1}
    finally:
        server.close()
    cache = ReplyCache(tmp_path / "judge_cache.sqlite")
    assert len(cache) == 0
    cache.close()


def stage_files(tmp_path):
    """An eval set and a generations file for the judges.score stage."""
    (tmp_path / "eval").mkdir()
    eval_rows = [{"id": f"general/{i}", "messages": [{"role": "user", "content": f"question {i}"}]} for i in range(2)]
    (tmp_path / "eval/general.jsonl").write_text("".join(json.dumps(r) + "\n" for r in eval_rows))
    generations = [{"id": f"general/{i}", "eval_set": "general", "sample": 0, "response": a}
                   for i, a in enumerate(("number", "wordy"))]
    (tmp_path / "generations.jsonl").write_text("".join(json.dumps(g) + "\n" for g in generations))


def test_the_stage_fails_on_requests_without_a_reply_and_a_rerun_asks_them(api_key, tmp_path):
    """Scored NaN, they would stay unscored for good: the parquet would end the job and Snakemake would
    never run it again once the server is back."""
    from safedrift.judges import score

    stage_files(tmp_path)
    out = tmp_path / "scores/gpt.parquet"

    def run(url):
        score.main(["--judge", "gpt", "--settings", json.dumps(settings(url, tmp_path)), "--generations",
                    str(tmp_path / "generations.jsonl"), "--eval-dir", str(tmp_path / "eval"), "--out", str(out)])

    down = JudgeServer(status=503)
    try:
        with pytest.raises(SafedriftError, match=r"judge gpt: 2 of 2 requests got no reply after every retry.*"
                                                 r"is not written.*a rerun asks only what has none"):
            run(down.url)
    finally:
        down.close()
    assert not out.exists()
    up = JudgeServer()
    try:
        run(up.url)
    finally:
        up.close()
    import pandas as pd

    assert list(pd.read_parquet(out)["aligned"]) == [42, 85]


def test_missing_env_var_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(SafedriftError, match=r"judges\.gpt\.api_key_env: environment variable "
                                             r"SAFEDRIFT_TEST_JUDGE_KEY is not set"):
        make_judge("gpt", settings("http://127.0.0.1:9/v1", tmp_path))


def test_rate_limit_spaces_requests(server, api_key, tmp_path):
    make_judge("gpt", settings(server.url, tmp_path, requests_per_minute=600)).score(  # one per 0.1 s, 4 threads
        rows("number", "wordy", "a", "b", "c"))
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:])]
    assert len(gaps) == 4 and min(gaps) >= 0.09
