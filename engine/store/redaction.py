"""The one redactor: credentials never reach a cache, a log, a failure record or a manifest.

Every place that stores or shows text passes it through here, and every removed credential
becomes the one marker :data:`REDACTED`. Two strengths: :func:`redact_secrets` replaces only
known secret values (registered keys, credential-named environment values), for model texts
that are data and must stay as written otherwise; :func:`redact` also removes what looks like a
credential by its form (URL user info, bearer tokens, credential-named query parameters and
JSON keys such as ``api_key``), for messages, settings and command lines.
:func:`is_credential_name` is the one rule for which names hold credentials, and
:func:`credential_values` finds the values a URL or a JSON body carries, so callers can
register them.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import overload
from urllib.parse import parse_qsl, unquote, urlsplit

import pyarrow as pa

REDACTED = "[redacted]"
"""What every removed credential is replaced by, wherever the text goes."""

_SECRET_FLAG = re.compile(r"(key|token|secret|password|passwd|auth)", re.IGNORECASE)
_SAFE_FLAGS = frozenset({"--api-key-env", "--token-budget", "--max-tokens", "--tpm"})
"""Flags whose names look secret but whose values are names or numbers, never credentials."""
_CREDENTIAL_NAMES = frozenset({
    "key", "apikey", "token", "auth", "authorization", "bearer", "secret", "password",
    "passwd", "pwd", "passphrase", "sig", "signature", "credential", "credentials", "cookie"})
"""Names (lower case, ``-`` as ``_``) that hold credentials as they are."""
_CREDENTIAL_ENDINGS = ("_key", "apikey", "_token", "accesstoken", "_secret", "password",
                       "_passwd", "_pwd", "_sig", "_signature", "_credential", "_credentials",
                       "_auth", "_cookie")
"""Endings of names that hold credentials (``x-api-key``, ``hf_token``, ``client_secret``)."""
_QUERY_PARAM = re.compile(r"(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&\s\"'#<>]+?)"
                          r"(?=[:;,.)]?(?:[&\s\"'#<>]|$))")
"""``name=value``; a value ends before punctuation that ends a sentence (``...=KEY: text``)."""
_JSON_PAIR = re.compile(
    r"""(?P<name>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')(?P<sep>\s*:\s*)"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|(?![{\["'])[^\s,}\]]+)""")
_BEARER = re.compile(r"((?:Bearer|Basic)\s+)\S+", re.IGNORECASE)
_URL_USER = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s]*@")
_JSON_TEXT_MAX = 1 << 20
"""Longest JSON text :func:`redact` parses to redact its credential keys at any depth."""
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
_MIN_SECRET = 6
"""Environment values shorter than this are not hunted for in text (too many false hits)."""
_MIN_REGISTERED = 4
"""A registered 1-3 character "key" would shred ordinary text: it is not registered."""

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()


def register_secret(value: str | None) -> None:
    """Register a secret (an API key) that must never be stored: every text column of every
    row written to a cache of this process is redacted of it. Backends register their keys."""
    if value and len(value) >= _MIN_REGISTERED:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def environment_secrets(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Values of environment variables whose names say they hold credentials, longest first."""
    env = os.environ if env is None else env
    return tuple(sorted({v for k, v in env.items()
                         if _SECRET_ENV.search(k) and len(v) >= _MIN_SECRET}, key=len,
                        reverse=True))


def known_secrets() -> list[str]:
    """Registered secrets plus credential-named environment values, longest first."""
    # The environment too: a driver that never opened a backend itself still knows the key
    # its actors read.
    with _SECRETS_LOCK:
        found = _SECRETS | set(environment_secrets())
    return sorted(found, key=len, reverse=True)


def _longest_first(secrets: Iterable[str]) -> list[str]:
    # Longest first, so no part of a longer secret is left behind by a shorter one.
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def redact_secrets(text: str | None, secrets: Iterable[str] | None = None) -> str | None:
    """``text`` with every secret value replaced by :data:`REDACTED` (the known secrets when
    ``secrets`` is None); nothing else in it changes. None and "" come back as they are."""
    return _replace(text, _longest_first(known_secrets() if secrets is None else secrets))


def _replace(text: str | None, ordered: Sequence[str]) -> str | None:
    if not text:
        return text
    for s in ordered:
        if s in text:
            text = text.replace(s, REDACTED)
    return text


def is_credential_name(name: str) -> bool:
    """Whether a query parameter, JSON key or header named ``name`` holds a credential
    (``api_key``, ``access_token``, ``X-Amz-Signature``, ``password`` ...). Names of numbers
    and settings that merely contain such a word (``max_tokens``, ``stop_token_ids``) do not."""
    norm = name.strip().strip("\"'").lower().replace("-", "_")
    return norm in _CREDENTIAL_NAMES or norm.endswith(_CREDENTIAL_ENDINGS)


def redact_json(value: object) -> object:
    """A parsed JSON value with the value of every credential-named key, at any depth, replaced
    by :data:`REDACTED` (whatever its type); everything else as it was."""
    if isinstance(value, Mapping):
        return {k: REDACTED if is_credential_name(str(k)) else redact_json(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(v) for v in value]
    return value


def credential_values(value: object) -> list[str]:
    """The credentials a JSON value carries under credential-named keys, at any depth (each
    scalar as text): what a caller registers so that no echo of them is stored."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            if is_credential_name(str(k)) and not isinstance(v, Mapping | list | tuple):
                found.append(str(v))
            else:
                found += credential_values(v)
    elif isinstance(value, list | tuple):
        for v in value:
            found += credential_values(v)
    return found


def url_credentials(url: str) -> list[str]:
    """The credentials a URL carries: its password (or the user name where there is none, as
    in ``https://KEY@host``) and the values of its credential-named query parameters."""
    try:
        parts = urlsplit(url)
        found = [v for v in (parts.password or parts.username,) if v]
        found += [unquote(v) for v in found if unquote(v) != v]
        found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True)
                  if v and is_credential_name(k)]
    except ValueError:  # a malformed URL: its text is redacted by form instead
        return []
    return found


def _query_sub(m: re.Match[str]) -> str:
    return f"{m['name']}={REDACTED}" if is_credential_name(m["name"]) else m[0]


def _json_sub(m: re.Match[str]) -> str:
    if not is_credential_name(m["name"]):
        return m[0]
    quote = m["value"][0] if m["value"][0] in "\"'" else '"'
    return f"{m['name']}{m['sep']}{quote}{REDACTED}{quote}"


def _redact_json_text(text: str) -> str:
    """A JSON object or array given as text, with credential-named keys redacted at any depth
    (also where escapes hide a key's name from the patterns)."""
    stripped = text.strip()
    if stripped[:1] not in ("{", "[") or len(stripped) > _JSON_TEXT_MAX:
        return text
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return text
    cleaned = redact_json(value)
    return text if cleaned == value else json.dumps(cleaned, ensure_ascii=False)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without credentials: the given secret values, URL user info, bearer tokens,
    credential-named query values (``api_key=``, ``token=``, ``sig=`` ...) and the values of
    credential-named keys in JSON (or Python) text become :data:`REDACTED`."""
    text = redact_secrets(text, secrets) or text
    text = _redact_json_text(text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    text = _JSON_PAIR.sub(_json_sub, text)
    text = _QUERY_PARAM.sub(_query_sub, text)
    return _URL_USER.sub(rf"\g<1>{REDACTED}@", text)


def safe_url(url: str) -> str:
    """``url`` as it may be shown: user info and credential-named query values redacted."""
    return redact(url)


def redact_argv(argv: Sequence[str], secrets: Iterable[str] = ()) -> list[str]:
    """The command line with the value of every credential-like flag (``--api-key K``,
    ``--token=K``) replaced by :data:`REDACTED`, and every other argument :func:`redact`-ed."""
    secrets = tuple(secrets)
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        secret_flag = (flag.startswith("--") and flag not in _SAFE_FLAGS
                       and bool(_SECRET_FLAG.search(flag)))
        if secret_flag and eq:
            out.append(f"{flag}={REDACTED}")
        elif secret_flag:
            out.append(arg)
            hide_next = True
        else:
            out.append(redact(arg, secrets))
    return out


@overload
def scrub(value: str, secrets: Iterable[str]) -> str: ...


@overload
def scrub(value: Mapping[str, object], secrets: Iterable[str]) -> dict[str, object]: ...


@overload
def scrub(value: object, secrets: Iterable[str]) -> object: ...


def scrub(value: object, secrets: Iterable[str]) -> object:
    """``value`` with :func:`redact` applied to every string inside it (keys of mappings too)."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {redact(str(k), secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return value


def redact_table(table: pa.Table, keep: Sequence[str] = ()) -> pa.Table:
    """Every string (and list-of-string) column except ``keep`` (the key fields) redacted of
    the known secrets with :func:`redact_secrets` (stored model texts keep everything else)."""
    secrets = _longest_first(known_secrets())
    if not secrets:
        return table
    for i, f in enumerate(table.schema):
        is_list = pa.types.is_list(f.type) and pa.types.is_string(f.type.value_type)
        if f.name in keep or not (is_list or pa.types.is_string(f.type)):
            continue
        values = table.column(i).to_pylist()
        if is_list:
            cleaned: list[object] = [None if v is None else [_replace(x, secrets) for x in v]
                                  for v in values]
        else:
            cleaned = [_replace(v, secrets) for v in values]
        if cleaned != values:
            table = table.set_column(i, f, pa.array(cleaned, f.type))
    return table
