"""The run manifest: credentials never written, Parquet metadata round trip, file checksums."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa

from pluralign.engine.store import manifest
from pluralign.engine.store.manifest import (
    REDACTED,
    Manifest,
    endpoint_host,
    environment_secrets,
    read_manifest,
    redact,
    redact_argv,
    with_manifest,
)

KEY = "sk-live-4f1e9c0d2b7a-planted"


def test_argv_hides_values_of_credential_flags_and_known_secrets() -> None:
    argv = ["pluralign", "sweep", "--api-key", KEY, "--token=abc123456", "--api-key-env",
            "MY_ENV", "--max-tokens", "512", "--base-url", f"http://h:1/v1?api_key={KEY}",
            f"--note={KEY}"]
    out = redact_argv(argv, [KEY])
    text = " ".join(out)
    assert KEY not in text and "abc123456" not in text
    assert out[out.index("--api-key") + 1] == REDACTED
    assert f"--token={REDACTED}" in out and REDACTED == "[redacted]"
    assert out[out.index("--api-key-env") + 1] == "MY_ENV"  # a name, not a secret
    assert out[out.index("--max-tokens") + 1] == "512"


def test_redact_removes_user_info_bearer_tokens_and_key_queries() -> None:
    text = f"http://bob:{KEY}@host/v1 Authorization: Bearer {KEY} http://h/?key={KEY}&x=1"
    out = redact(text)
    assert KEY not in out and "x=1" in out and "host/v1" in out


def test_endpoint_host_drops_credentials_and_query() -> None:
    assert endpoint_host(f"https://u:{KEY}@api.example.com:8443/v1?key={KEY}") == \
        "https://api.example.com:8443/v1"
    assert endpoint_host(None) is None


def test_environment_secrets_are_values_of_credential_named_variables() -> None:
    env = {"OPENAI_API_KEY": KEY, "HOME": "/home/someone", "HF_TOKEN": "hf_abcdefgh",
           "SHORT_KEY": "abc"}
    assert set(environment_secrets(env)) == {KEY, "hf_abcdefgh"}


def test_manifest_scrubs_every_string_and_rides_in_parquet_metadata(tmp_path: Path) -> None:
    data = tmp_path / "eval.json"
    data.write_bytes(b'{"x": 1}')
    m = Manifest("sweep", ["pluralign", "sweep"], secrets=(KEY,))
    m.note_benchmark("b@1", "eval", 3, [data, tmp_path / "absent.json"])
    m.note_scorer({"identity": "s#1", "settings": {"extra_body": json.dumps({"u": KEY})}})
    m.note_counts({"items": 4, "failures": {f"auth {KEY}": 1}, "stopped": "token budget"})
    d = m.as_dict()
    assert KEY not in json.dumps(d)
    assert d["interrupted"] is True and d["stop_reason"] == "token budget"
    assert d["benchmark"]["files"] == [{"name": "eval.json", "bytes": 8,
                                        "sha256": hashlib.sha256(b'{"x": 1}').hexdigest()}]
    for field in ("pluralign", "git_commit", "argv", "started", "ended", "hosts", "counts"):
        assert field in d
    table = with_manifest(pa.table({"a": [1]}), m)
    back = read_manifest(table.schema.metadata)
    assert back is not None and back["scorer"]["identity"] == "s#1"
    assert with_manifest(table, None) is table


def test_begin_end_set_the_current_manifest() -> None:
    m = manifest.begin("align", ["pluralign", "align", "--api-key", KEY])
    try:
        assert manifest.current() is m and KEY not in " ".join(m.argv)
    finally:
        manifest.end()
    assert manifest.current() is None
