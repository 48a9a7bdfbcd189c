"""``pluralign fake-server``: a flag for every config field, checked ranges, faults over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field, fields
from typing import Any

import pytest

from pluralign.actors.testing import fake_server
from pluralign.actors.testing.fake_server import FakeOpenAIServer, FakeServerConfig
from pluralign.jobs.cli import fake_server as cmd_fake_server
from pluralign.jobs.cli import main, parse
from pluralign.jobs.cli.fake_server import NOT_FLAGS, config_flags, field_docs

SCHEMA = {"type": "object", "properties": {"reasoning": {"type": "string", "minLength": 40},
                                           "score": {"type": "integer", "maximum": 100}},
          "required": ["reasoning", "score"]}


def test_every_config_field_has_a_flag_or_a_reason_not_to() -> None:
    names = {f.name for f in fields(FakeServerConfig)}
    flagged = {f.field for f in config_flags()}
    assert NOT_FLAGS.keys() <= names  # no stale entries
    assert names - NOT_FLAGS.keys() == flagged, "a FakeServerConfig field has no flag"
    assert len(NOT_FLAGS) <= 2  # the allow-list stays short
    assert names <= field_docs(FakeServerConfig).keys()  # every field says what it does
    options = [f.option for f in config_flags()]
    assert len(set(options)) == len(options)
    for flag in config_flags():
        if flag.field.startswith("fault_"):
            assert flag.option == "--" + flag.field.replace("_", "-")


def test_help_comes_from_the_field_docstrings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["fake-server", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--fault-truncated SHARE Share of requests answered cut in half" in out
    assert "stall --timeout-sleep seconds" in out  # a field named in a docstring: its flag
    assert "at most one fault" in out and "``" not in out


def test_a_new_field_becomes_a_flag_and_an_unflaggable_one_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclass
    class Wider(FakeServerConfig):
        fault_slow_start: float = 0.0
        """Share of requests answered after a cold start."""

    monkeypatch.setattr(fake_server, "FakeServerConfig", Wider)
    [new] = [f for f in config_flags() if f.field == "fault_slow_start"]
    assert new.option == "--fault-slow-start"
    assert new.kwargs["help"].startswith("Share of requests answered after a cold start")
    with pytest.raises(Exception, match="share in"):
        new.kwargs["type"]("1.5")

    @dataclass
    class Odd(FakeServerConfig):
        headers: tuple[str, ...] = ()
        """Extra response headers."""

    monkeypatch.setattr(fake_server, "FakeServerConfig", Odd)
    with pytest.raises(TypeError, match="headers: no flag for type"):
        config_flags()

    @dataclass
    class Required(FakeServerConfig):
        token: str = field(default_factory=str)
        """A token."""

    monkeypatch.setattr(fake_server, "FakeServerConfig", Required)
    with pytest.raises(TypeError, match="token has no default"):
        config_flags()


def test_every_flag_reaches_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["fake-server", "--port", "8089", "--model", "m", "--rpm", "5", "--rpm-window", "2",
            "--latency", "0.5", "--jitter", "0.25", "--retry-after", "3", "--timeout-sleep", "4",
            "--force-status", "413", "--max-choices", "1", "--no-logprobs", "--no-auth",
            "--seed", "7"]
    shares = [f.option for f in config_flags() if f.field.startswith("fault_")]
    for option in shares:
        argv += [option, "0.1"]
    args = parse(argv)
    served: list[FakeServerConfig] = []
    monkeypatch.setattr(FakeOpenAIServer, "serve_forever",
                        lambda self, on_ready=None: served.append(self.config))
    assert args.func(args) == 0
    [config] = served
    assert (config.port, config.model, config.rpm, config.rpm_window) == (8089, "m", 5, 2.0)
    assert (config.latency, config.jitter, config.retry_after, config.timeout_sleep) \
        == (0.5, 0.25, 3.0, 4.0)
    assert (config.force_status, config.max_choices, config.seed) == (413, 1, 7)
    assert config.logprobs is False and config.require_auth is False
    assert all(share == 0.1 for share in fake_server.fault_shares(config).values())
    assert len(shares) == len(fake_server.fault_shares(config)) >= 9
    defaults = parse(["fake-server"])
    assert {f.field: getattr(defaults, f.field) for f in config_flags()} == {
        f.name: getattr(FakeServerConfig(), f.name) for f in fields(FakeServerConfig)
        if f.name not in NOT_FLAGS}


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--fault-fenced", "1.5", "must be a share in [0, 1], got 1.5"),
    ("--fault-reset", "-0.1", "must be a share in [0, 1], got -0.1"),
    ("--fault-control-chars", "nan", "must be a share in [0, 1], got nan"),
    ("--fault-truncated", "half", "must be a share in [0, 1], got 'half' (not a number)"),
    ("--rpm", "0", "must be an integer >= 1, got 0"),
    ("--rpm-window", "0", "must be a number of seconds > 0, got 0"),
    ("--latency", "-1", "must be a number >= 0, got -1"),
    ("--force-status", "99", "must be an HTTP status in [100, 599], got 99"),
    ("--max-choices", "0", "must be an integer >= 1, got 0"),
])
def test_out_of_range_values_name_the_flag(flag: str, value: str, message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["fake-server", flag, value])
    assert e.value.code == 2
    assert f"argument {flag}: {message}" in capsys.readouterr().err


def test_shares_adding_up_past_one_are_refused(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(FakeOpenAIServer, "serve_forever", lambda self, on_ready=None: None)
    assert main(["fake-server", "--fault-truncated", "0.6", "--fault-fenced", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "add up to 1.1 (--fault-fenced 0.5, --fault-truncated 0.6)" in err
    assert "at most one fault" in err
    # 0.1 + 0.2 + 0.7 is 1.0000000000000002 in floating point: still a whole.
    assert main(["fake-server", "--fault-429", "0.1", "--fault-5xx", "0.2",
                 "--fault-timeout", "0.7"]) == 0
    with pytest.raises(ValueError, match=r"add up to 1\.1 .*fault_fenced=0\.5"):
        FakeServerConfig(fault_truncated=0.6, fault_fenced=0.5)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        answer: dict[str, Any] = json.loads(r.read())
    return answer


def test_the_command_serves_the_faults_its_flags_ask_for() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pluralign", "fake-server", "--no-auth",
         "--fault-truncated", "1", "--max-choices", "1", "--no-logprobs"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), (
            url, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        body = {"model": "fake-model", "n": 3, "logprobs": True, "top_logprobs": 2,
                "messages": [{"role": "user", "content": "rate it"}],
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "r", "schema": SCHEMA}}}
        [choice] = _post(url, body)["choices"]  # --max-choices 1, although n = 3
        assert choice["finish_reason"] == "length"
        assert "logprobs" not in choice  # --no-logprobs
        content = choice["message"]["content"]
        assert content.startswith('{"reasoning": "')
        with pytest.raises(json.JSONDecodeError):
            json.loads(content)  # cut in half
        with urllib.request.urlopen(f"{url.removesuffix('/v1')}/fake/stats", timeout=10) as r:
            stats = json.loads(r.read())
        assert [ev["fault"] for ev in stats["events"]] == ["truncated"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_flags_written_by_hand_before_keep_their_names() -> None:
    options = {f.option for f in cmd_fake_server.config_flags()}
    assert {"--host", "--port", "--model", "--rpm", "--rpm-window", "--latency", "--jitter",
            "--fault-429", "--retry-after", "--fault-5xx", "--fault-timeout", "--timeout-sleep",
            "--fault-malformed", "--fault-bad-content", "--no-auth", "--seed"} <= options
