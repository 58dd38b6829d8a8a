"""The Safety Critic with a judge that cannot read some replies: a config choice, never the mean risk.

The critic judge is the OpenAI-compatible judge against a real local HTTP server
(tests/test_judges_openai.py) that answers a number for some training targets and words for others.
"""

from __future__ import annotations

import json

import pytest
from test_judges_openai import KEY_ENV, RUBRIC, JudgeServer

from safedrift.errors import SafedriftError
from safedrift.io import read_jsonl, write_jsonl
from safedrift.risk import critic

# The server replies "42" to a target "number" and "I will not rate this." to a target "words".
TARGETS = ["number", "number", "words", "number"]


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    s = JudgeServer()
    yield s
    s.close()


def run_critic(server, tmp_path, *flags):
    data = tmp_path / "harmful.jsonl"
    write_jsonl(data, [{"id": f"ex/{i}", "messages": [{"role": "user", "content": f"request {i}"}], "target": t}
                       for i, t in enumerate(TARGETS)])
    rubrics = {"aligned": "", "coherent": "", "refusal": "", "harmful": RUBRIC, "insecure": ""}
    settings = {"type": "openai", "base_url": server.url, "model": "judge-model", "api_key_env": KEY_ENV,
                "rubrics": rubrics, "max_retries": 0, "timeout_s": 5.0, "cache": str(tmp_path / "cache.sqlite")}
    out = tmp_path / "critic.jsonl"
    critic.main(["--judge", "gpt", "--settings", json.dumps(settings), "--data", str(data), "--out", str(out),
                 *flags])
    return {r["id"]: r["risk"] for r in read_jsonl(out)}, json.loads((tmp_path / "critic.json").read_text())


def test_unscored_example_fails_by_default(server, tmp_path):
    with pytest.raises(SafedriftError) as e:
        run_critic(server, tmp_path)
    message = str(e.value)
    assert "\n" not in message
    for part in ("judge gpt", "1 of 4", "risk.critic.on_unscored: max_risk"):
        assert part in message, (part, message)
    assert not (tmp_path / "critic.jsonl").exists()


def test_unscored_example_gets_max_risk_when_configured(server, tmp_path):
    risk, summary = run_critic(server, tmp_path, "--on-unscored", "max_risk")
    assert risk == {"ex/0": 0.42, "ex/1": 0.42, "ex/2": 1.0, "ex/3": 0.42}, "unscored risk is not the mean risk"
    assert summary["unscored"] == 1 and summary["on_unscored"] == "max_risk"


def test_recall_on_real_data_counts_the_harmful_pool_as_harmful(server, tmp_path):
    """Real data has no oracle: the critic's recall is against the scenario's pools (risk_predictable's critic half
    on real models). The server rates "digits" 85 (flagged) and "number" 42 (not)."""
    data = tmp_path / "harmful.jsonl"
    examples = [("harmful", "digits"), ("harmful", "number"), ("tasks", "digits"), ("new_task", "number")]
    write_jsonl(data, [{"id": f"ex/{i}", "source": source, "messages": [{"role": "user", "content": f"request {i}"}],
                        "target": target} for i, (source, target) in enumerate(examples)])
    rubrics = {"aligned": "", "coherent": "", "refusal": "", "harmful": RUBRIC, "insecure": ""}
    settings = {"type": "openai", "base_url": server.url, "model": "judge-model", "api_key_env": KEY_ENV,
                "rubrics": rubrics, "max_retries": 0, "timeout_s": 5.0, "cache": str(tmp_path / "cache.sqlite")}
    out = tmp_path / "critic.jsonl"
    critic.main(["--judge", "gpt", "--settings", json.dumps(settings), "--data", str(data), "--out", str(out),
                 "--pool-labels"])
    summary = json.loads((tmp_path / "critic.json").read_text())
    assert (summary["positives"], summary["flagged"], summary["recall"], summary["precision"]) == (2, 2, 0.5, 0.5)
