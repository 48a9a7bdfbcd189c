"""The one redactor: one marker everywhere, values and credential forms removed, data kept."""

from __future__ import annotations

import pytest

from pluralign.engine.run import scheduler
from pluralign.engine.store import manifest, parts, redaction
from pluralign.engine.store.redaction import (
    REDACTED,
    redact,
    redact_argv,
    redact_secrets,
    register_secret,
    scrub,
)

KEY = "sk-live-0123456789-planted"


def test_one_marker_for_every_user() -> None:
    assert REDACTED == "[redacted]"
    assert manifest.REDACTED == parts.REDACTED == REDACTED
    assert manifest.redact is scheduler.redact is redact
    assert parts.redact_secrets is redact_secrets


def test_redact_removes_values_passwords_bearer_tokens_and_key_queries() -> None:
    text = (f"say {KEY}; http://bob:hunter2@host/v1 Authorization: Bearer abc.def "
            "http://h/?api_key=zzz&x=1")
    out = redact(text, [KEY])
    assert out == (f"say {REDACTED}; http://{REDACTED}@host/v1 Authorization: Bearer {REDACTED} "
                   f"http://h/?api_key={REDACTED}&x=1")


def test_longer_secret_goes_first_so_no_part_of_it_remains() -> None:
    assert redact_secrets("a sk-1234-long b", ["sk-1234", "sk-1234-long"]) == f"a {REDACTED} b"


def test_redact_secrets_changes_only_secret_values() -> None:
    # stored model texts are data: a "key=" or a URL in an answer stays as written
    text = f"key=value http://u:p@h Bearer x {KEY}"
    assert redact_secrets(text, [KEY]) == f"key=value http://u:p@h Bearer x {REDACTED}"
    assert redact_secrets(None, [KEY]) is None and redact_secrets("", [KEY]) == ""


def test_registered_and_environment_secrets_are_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redaction, "_SECRETS", set())
    register_secret("abc")  # too short to register
    register_secret(KEY)
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-env-12345")
    assert "abc" not in redaction.known_secrets()
    assert redact_secrets(f"{KEY} tok-env-12345") == f"{REDACTED} {REDACTED}"


def test_argv_and_nested_values() -> None:
    out = redact_argv(["x", "--api-key", KEY, "--password=pw", "--max-tokens", "9"])
    assert out == ["x", "--api-key", REDACTED, f"--password={REDACTED}", "--max-tokens", "9"]
    assert scrub({"a": [KEY, 1], KEY: "b"}, [KEY]) == {"a": [REDACTED, 1], REDACTED: "b"}
