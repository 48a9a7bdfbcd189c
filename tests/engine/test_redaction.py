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


@pytest.mark.parametrize(("name", "secret"), [
    ("api_key", True), ("apiKey", True), ("x-api-key", True), ("access_token", True),
    ("token", True), ("sig", True), ("X-Amz-Signature", True), ("client_secret", True),
    ("password", True), ("Authorization", True), ("hf_token", True),
    ("max_tokens", False), ("stop_token_ids", False), ("top_logprobs", False),
    ("monkey", False), ("keywords", False), ("note", False),
])
def test_credential_names(name: str, secret: bool) -> None:
    assert redaction.is_credential_name(name) is secret


def test_json_credentials_are_redacted_at_any_depth_in_values_and_text() -> None:
    body = {"metadata": {"api_key": "sk-1", "deep": [{"token": 7}]}, "top_p": 0.9,
            "max_tokens": 5}
    assert redaction.redact_json(body) == {
        "metadata": {"api_key": REDACTED, "deep": [{"token": REDACTED}]}, "top_p": 0.9,
        "max_tokens": 5}
    assert sorted(redaction.credential_values(body)) == ["7", "sk-1"]
    import json
    for text in (json.dumps(body), f"--extra-body={json.dumps(body)}",
                 f"error: {body!r} was refused", '{"api\\u005fkey": "sk-1"}'):
        out = redact(text)
        assert "sk-1" not in out and REDACTED in out, out
    assert "0.9" in redact(json.dumps(body)) and '"max_tokens": 5' in redact(json.dumps(body))


def test_url_credentials_and_safe_url() -> None:
    url = "https://u:p%40ss-word@h:8443/v1?api-version=2024&key=k-123&sig=s-456"
    assert redaction.url_credentials(url) == ["p%40ss-word", "p@ss-word", "k-123", "s-456"]
    assert redaction.url_credentials("https://tok-only@h/v1") == ["tok-only"]
    shown = redaction.safe_url(url)
    assert shown == (f"https://{REDACTED}@h:8443/v1?api-version=2024&key={REDACTED}"
                     f"&sig={REDACTED}")
    assert redact("http://u:p@ss@host/v1") == f"http://{REDACTED}@host/v1"


def test_a_query_value_ends_before_the_sentence_goes_on() -> None:
    text = "HTTP 401 from http://h/v1?api_key=sk-q-1234: the key was refused"
    assert redact(text) == f"HTTP 401 from http://h/v1?api_key={REDACTED}: the key was refused"
    assert redact("token=ab:cd x") == f"token={REDACTED} x"
