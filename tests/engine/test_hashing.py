"""One hashing module: its rules, and the keys it gives equal those earlier caches were written
with (a changed key would silently turn every cached answer into a miss)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from pluralign.engine.run.backend import GenerationRequest, Message
from pluralign.engine.store.cache import scorer_identity
from pluralign.engine.store.choices import choice_key
from pluralign.engine.store.generations import work_key
from pluralign.engine.store.hashing import (
    Hasher,
    canonical_json,
    digest,
    file_digest,
    seed_of,
    settings_digest,
    text_digest,
)


def test_digest_is_sha256_of_compact_sorted_json() -> None:
    value = {"b": [1, 2.5], "a": "é", "c": None}
    blob = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    assert digest(value, 20) == hashlib.sha256(blob).hexdigest()[:20]
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest([1, 2]) != digest([2, 1])


def test_text_file_and_stream_digests_agree(tmp_path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc" * 1000)
    full = hashlib.sha256(b"abc" * 1000).hexdigest()
    assert file_digest(f) == full
    assert text_digest(b"abc" * 1000) == full
    assert Hasher().files([f]).hexdigest() == full
    assert Hasher("ab").update(b"c").hexdigest(8) == text_digest("abc", 8)
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert Hasher().array(a.T).hexdigest() == text_digest(np.ascontiguousarray(a.T).tobytes())


def test_length_prefixed_texts_keep_boundaries() -> None:
    assert Hasher().texts(["ab", "c"]).hexdigest() != Hasher().texts(["a", "bc"]).hexdigest()


def test_settings_are_strict() -> None:
    assert canonical_json({"b": (1, np.int64(2)), "a": {3}}) == '{"a":[3],"b":[1,2]}'
    assert settings_digest({"x": np.float64(0.5)}) == settings_digest({"x": 0.5})
    with pytest.raises(ValueError, match="not finite"):
        canonical_json({"x": float("nan")})
    with pytest.raises(TypeError, match="cannot go into a cache key"):
        canonical_json({"x": object()})


def test_seed_is_stable_and_64_bit() -> None:
    assert seed_of("k") == int(hashlib.sha256(b"k").hexdigest()[:16], 16)
    assert 0 <= seed_of("anything") < 2**64


def test_keys_equal_those_of_earlier_caches() -> None:
    # Values computed by the code that wrote the first caches (before the hashing module):
    # request fingerprints, generation keys, scorer identities and choice keys must not move.
    req = GenerationRequest("x", (Message("system", "s é"), Message("user", "ü")),
                            temperature=0.5, seed=2, max_tokens=7)
    assert req.fingerprint() == "6342c4be511b05da"
    assert work_key("m", req) == "7ed2a0f107009ae0bd4f6b63aa1c1f58"
    assert scorer_identity("ridge", {"a": [1, 2.5], "b": "é"}) == "ridge#2071e5952e31"
    assert choice_key("b", "s", '{"x":1}', "sc", 1) == "b18ef4a4cacc76c6938c4c6eddc92bc5"
