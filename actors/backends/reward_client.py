"""Reward-model backends for :mod:`pluralign.engine.judges.reward`: HTTP and vLLM in-process.

``HTTPRewardClient`` posts input texts to a pooling route and reads one list of head values per
input. Two response shapes are understood, those of vLLM's OpenAI-compatible server:
``/pooling`` answers ``{"data": [{"index": i, "data": [v, ...]}]}`` and ``/classify`` answers
``{"data": [{"index": i, "probs": [p, ...]}]}``; any endpoint that answers either shape works.
The API key comes from the environment only and is never logged or stored.

``VLLMRewardModel`` runs a pooling model in this process (``vllm.LLM(..., runner="pooling")``,
``LLM.encode(..., pooling_task="classify")``); vLLM is imported only when it starts.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import aiohttp

from pluralign.actors.backends.api_client import check_base_url, route_url
from pluralign.engine.store.cache import register_secret
from pluralign.engine.store.redaction import safe_url, url_credentials


def _heads(value: object) -> list[float] | str:
    """One item's head values, or a message saying what was wrong with it."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        value = value[-1]  # token-level output: the last token's values
    if not isinstance(value, list) or not value:
        return f"no head values in the answer: {str(value)[:80]}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return "head values are not all numbers"
    return [float(v) for v in value]


def parse_pooling_answer(body: object, n: int) -> list[list[float] | str]:
    """Per input, its head values or an error message (a missing item is an error)."""
    out: list[list[float] | str] = ["missing from the answer"] * n
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return ["answer has no data list"] * n
    for pos, item in enumerate(data):
        if not isinstance(item, dict):
            continue
        idx = item.get("index", pos)
        if not isinstance(idx, int) or not 0 <= idx < n:
            continue
        out[idx] = _heads(item["probs"] if "probs" in item else item.get("data"))
    return out


class HTTPRewardClient:
    """Reward scores from ``route``: a route starting with ``/`` is taken from the server root
    (vLLM serves ``/pooling`` and ``/classify`` beside ``/v1``), any other under ``base_url``."""

    def __init__(self, base_url: str, model: str, *, route: str = "/pooling",
                 api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 120.0,
                 retries: int = 2) -> None:
        check_base_url(base_url, api_key_env)  # http(s), a host, one credential
        # From the server root, as vLLM serves /pooling and /classify, or relative to the base
        # URL (e.g. "rewards" under .../v1); either way before the query, never after it.
        self.url = route_url(base_url, route)
        self.model = model
        self._key = os.environ.get(api_key_env) if api_key_env else None
        register_secret(self._key)
        for credential in url_credentials(base_url):
            register_secret(credential)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries

    async def __call__(self, texts: Sequence[str]) -> list[list[float] | str]:
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        body = {"model": self.model, "input": list(texts)}
        last = ""
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            for attempt in range(self._retries + 1):
                try:
                    async with session.post(self.url, json=body, headers=headers) as resp:
                        if resp.status == 200:
                            return parse_pooling_answer(await resp.json(), len(texts))
                        last = f"HTTP {resp.status} from {safe_url(self.url)}"
                        if resp.status not in (429, 500, 502, 503, 504):
                            break
                except (TimeoutError, aiohttp.ClientError) as exc:
                    last = f"{type(exc).__name__} calling {safe_url(self.url)}"
                await asyncio.sleep(0.2 * 2 ** attempt)
        raise RuntimeError(last)


class VLLMRewardModel:
    """A pooling model in this process; call with texts, get head values per text."""

    def __init__(self, model: str, *, revision: str | None = None,
                 **engine_kwargs: object) -> None:
        from vllm import LLM  # imported here: vLLM is optional

        self._llm = LLM(model=model, revision=revision, runner="pooling", **engine_kwargs)

    async def __call__(self, texts: Sequence[str]) -> list[list[float] | str]:
        outs = await asyncio.to_thread(self._llm.encode, list(texts), use_tqdm=False,
                                       pooling_task="classify")
        return [_heads(o.outputs.data.flatten().tolist()) for o in outs]

    def close(self) -> None:
        """Stop the engine's core process now, while the interpreter can still do it cleanly
        (left to the interpreter's exit, its shutdown can abort the process)."""
        core = getattr(getattr(self._llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            shutdown()
