"""Typed settings of an LLM judge, for the Python API (the command line builds the same from
its flags)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Literal


@dataclass(frozen=True)
class LLMConfig:
    """How to reach and sample an LLM judge. Every field not set keeps the command line's
    default (``pluralign sweep --help``)."""

    model: str
    """Model name the endpoint serves (part of the cache identity)."""
    backend: Literal["openai", "vllm"] = "openai"
    """An OpenAI-compatible HTTP endpoint, or vLLM replicas on GPUs."""
    base_url: str | None = None
    """Endpoint root ending in /v1 (None: https://api.openai.com/v1)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key ('none': no key). Keys are never passed in."""
    revision: str | None = None
    """Model revision (commit or tag of the weights), recorded in the identity."""
    samples: int = 1
    """Samples per item (self-consistency; 1 = greedy)."""
    temperature: float | None = None
    """Sampling temperature (None: 0 with one sample, 0.7 with more)."""
    max_tokens: int = 1024
    """Most tokens per answer."""
    few_shot: bool | None = None
    """In-context examples from the training split (None: the judge's default)."""
    rpm: float | None = None
    """Requests per minute for this key."""
    tpm: float | None = None
    """Tokens per minute for this key."""
    concurrency: int = 16
    """Requests in flight per API client."""
    max_retries: int = 6
    """Most times one item is sent in total, every retry included."""
    request_timeout: float = 60.0
    """Seconds before one HTTP attempt counts as timed out."""
    token_budget: int | None = None
    """Stop sending once this many tokens were used."""
    use_ray: bool = False
    """Run API clients as Ray actors (False: in this process, the notebook default)."""
    actors: int = 1
    """API-client actors or vLLM replicas (with ``use_ray``)."""
    redis_url: str | None = None
    """Share rate limits across a cluster through this Redis."""

    def to_namespace(self, base: argparse.Namespace | None = None) -> argparse.Namespace:
        """The options LLM scoring reads: the command line's defaults, overridden by this
        config (``use_ray`` is the inverse of ``--no-ray``)."""
        from pluralign.jobs.llm_scoring import add_backend_args

        parser = argparse.ArgumentParser(add_help=False)
        add_backend_args(parser)
        ns = parser.parse_args([])
        for key, value in vars(base or argparse.Namespace()).items():
            setattr(ns, key, value)
        for f in fields(self):
            if f.name != "use_ray":
                setattr(ns, f.name, getattr(self, f.name))
        ns.no_ray = not self.use_ray
        return ns
