"""A plan before spending: what an LLM run would send, what it would cost in each lane and how
long it would take, computed from the cache, the claims and the batch journal; sends nothing.

``pluralign plan`` prints it; ``--dry-run`` on a command that can call a model prints it
instead of running; every real run records it in its manifest beside the actual counts, so
the estimate's error can be read after the fact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pluralign.actors.backends.batch_journal import BatchJournal
from pluralign.engine.errors import InputError
from pluralign.engine.judges import Judge, WorkItem
from pluralign.engine.run.backend import GenerationRequest, Message
from pluralign.engine.run.scheduler import ResultStore, plan
from pluralign.engine.store.claims import Claims
from pluralign.jobs.configs import LLMConfig

CHARS_PER_TOKEN = 4.0
"""The estimate where no tokenizer is at hand (English prose averages about 4 characters per
token with the common BPE vocabularies)."""
MESSAGE_OVERHEAD = 4
"""Tokens a chat template adds per message (role markers), as OpenAI documents for its chat
models; added to every count, exact or estimated."""
COUNT_LIMIT = 5000
"""Most requests whose prompts are counted; beyond this an even sample is counted and scaled."""

PRICES_DATE = "2025-06"
"""When the shipped prices were read off the providers' price pages (pass ``prices`` for
today's)."""
SHIPPED_PRICES: dict[str, dict[str, float]] = {
    # USD per 1M tokens: input, output; batch lanes at the providers' 50 % discount.
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4.1": {"input": 2.00, "output": 8.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
    "o4-mini": {"input": 1.10, "output": 4.40},
    "claude-3-5-haiku": {"input": 0.80, "output": 4.00},
    "claude-sonnet-4": {"input": 3.00, "output": 15.00},
    "claude-opus-4": {"input": 15.00, "output": 75.00},
}
BATCH_DISCOUNT = 0.5
"""Batch price as a share of the online price where a table gives none (OpenAI, Anthropic)."""


class DryRunDone(Exception):
    """Raised by a run asked for ``dry_run``: the plan was printed, nothing was sent."""

    def __init__(self, run_plan: RunPlan) -> None:
        super().__init__("dry run: nothing sent")
        self.plan = run_plan


@dataclass(frozen=True)
class Prices:
    """Prices of one model per 1M tokens, online and batch."""

    input: float
    output: float
    batch_input: float
    batch_output: float
    source: str
    """Where they come from (the shipped table and its date, a file, or flags)."""

    def cost(self, prompt: float, completion: float, lane: str) -> float:
        if lane == "batch":
            return (prompt * self.batch_input + completion * self.batch_output) / 1e6
        return (prompt * self.input + completion * self.output) / 1e6


def load_prices(path: str | None) -> tuple[dict[str, dict[str, float]], str]:
    """(model -> prices per 1M tokens, source) from ``path`` (JSON: ``{"date": ..., "models":
    {model: {"input": .., "output": .., "batch_input"?: .., "batch_output"?: ..}}}`` or the
    ``models`` object alone), else the shipped table."""
    if not path:
        return SHIPPED_PRICES, f"shipped table of {PRICES_DATE}"
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"cannot read the price table ({e.strerror})", file=path,
                         field="prices") from None
    except json.JSONDecodeError as e:
        raise InputError(f"the price table is not JSON ({e.msg})", file=path,
                         field="prices") from None
    models = raw.get("models", raw) if isinstance(raw, dict) else None
    if not isinstance(models, dict):
        raise InputError("the price table must be a JSON object of models", file=path)
    table: dict[str, dict[str, float]] = {}
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise InputError("prices must be an object", file=path, record=name)
        for k in ("input", "output"):
            v = entry.get(k)
            if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
                raise InputError("needs a price >= 0 per 1M tokens", file=path, record=name,
                                 field=k)
        table[str(name)] = {k: float(v) for k, v in entry.items()
                            if isinstance(v, int | float) and not isinstance(v, bool)}
    date = raw.get("date") if isinstance(raw, dict) else None
    return table, f"{path}" + (f" ({date})" if date else "")


def prices_for(model: str, path: str | None = None, *, prompt_per_1k: float = 0.0,
               completion_per_1k: float = 0.0) -> Prices | None:
    """The prices of ``model``: the flags' per-1k prices when given, else the table's entry
    for the model (exact, else the longest table name it starts with); None if unknown."""
    if prompt_per_1k or completion_per_1k:
        i, o = prompt_per_1k * 1000, completion_per_1k * 1000
        return Prices(i, o, i * BATCH_DISCOUNT, o * BATCH_DISCOUNT, "price flags")
    table, source = load_prices(path)
    name = model.rsplit("/", 1)[-1]
    match = table.get(name) or next(
        (table[k] for k in sorted(table, key=len, reverse=True) if name.startswith(k)), None)
    if match is None:
        return None
    i, o = match["input"], match["output"]
    return Prices(i, o, match.get("batch_input", i * BATCH_DISCOUNT),
                  match.get("batch_output", o * BATCH_DISCOUNT), source)


# ------------------------------------------------------------------------- token counting

Counter = Callable[[Sequence[Message]], int]
"""Prompt tokens of one request's messages."""


def _per_message(count: Callable[[str], int]) -> Counter:
    """A text counter applied per message, plus the chat template's usual overhead."""
    return lambda messages: sum(count(m.content) + MESSAGE_OVERHEAD for m in messages) + 3


def _tiktoken_counter(model: str) -> Counter | None:
    """tiktoken's exact count for an OpenAI model name, when tiktoken is installed and its
    tables load (they are downloaded on first use: offline, this gives None)."""
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        enc = tiktoken.encoding_for_model(model.rsplit("/", 1)[-1])
    except Exception:  # an unknown name, or no network for the tables
        return None
    return _per_message(lambda text: len(enc.encode(text, disallowed_special=())))


def _local_counter(model: str) -> Counter | None:
    """The tokenizer and chat template of a local model folder, via transformers where it is
    installed (the vLLM environment has it), else the bare tokenizer via tokenizers."""
    folder = Path(model)
    if not (folder / "tokenizer.json").is_file():
        return None
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))

        def templated(messages: Sequence[Message]) -> int:
            chat = [{"role": m.role, "content": m.content} for m in messages]
            ids = tok.apply_chat_template(chat, tokenize=True, add_generation_prompt=True)
            if isinstance(ids, Mapping):  # newer transformers return a BatchEncoding
                ids = ids["input_ids"]
            return len(ids)

        templated([Message("user", "x")])  # a folder without a chat template fails here
        return templated
    except Exception:
        pass
    try:
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
        return _per_message(lambda text: len(fast.encode(text, add_special_tokens=False).ids))
    except Exception:
        return None


def token_counter(model: str, backend: str) -> tuple[Counter, str]:
    """(prompt tokens of a request's messages, how they are counted): a local model folder's
    tokenizer and chat template, tiktoken for OpenAI model names, else the
    4-characters-per-token estimate."""
    if backend == "vllm" or Path(model).is_dir():
        local = _local_counter(model)
        if local is not None:
            return local, f"exact (tokenizer of {Path(model).name})"
    exact = _tiktoken_counter(model)
    if exact is not None:
        return exact, "exact (tiktoken)"
    return (_per_message(lambda text: math.ceil(len(text) / CHARS_PER_TOKEN)),
            f"estimate ({CHARS_PER_TOKEN:g} characters per token)")


def request_tokens(req: GenerationRequest, count: Counter) -> int:
    return count(req.messages)


def _item_tokens(judge: Judge, item: WorkItem, count: Counter) -> int:
    """Prompt tokens of ``item``'s request; 0 when its prompt cannot be built (the run
    records that item as failed without sending it)."""
    try:
        return request_tokens(judge.request(item), count)
    except Exception:
        return 0


# ------------------------------------------------------------------------- the plan


@dataclass
class RunPlan:
    """What a run would send, cost and take; nothing was sent to make it."""

    scorer: str
    model: str
    items: int
    """Distinct work items the run asks for."""
    cached: int
    """Already answered in the cache."""
    claimed_elsewhere: int
    """Held by another live process right now (it will answer them)."""
    in_open_batches: int
    """In batches still open at the provider (reattached, never sent again)."""
    to_send: int
    """Items (one request each) this run would send."""
    samples_per_request: int
    prompt_tokens: int
    """Prompt tokens of the requests to send (calibrated on cached answers when any)."""
    prompt_method: str
    """How they were counted: exact (which tokenizer) or an estimate."""
    completion_tokens: int
    completion_method: str
    """``measured mean of N cached answers`` or ``max_tokens x samples (an upper bound)``."""
    costs: dict[str, float | None] = field(default_factory=dict)
    """Cost per lane (online, batch) in the price table's unit; None where no price is known."""
    price_source: str | None = None
    seconds_online: float | None = None
    """Time at the key's rpm/tpm (None: no limits given)."""
    limits: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        lines = [
            f"plan for {self.scorer} ({self.model}): {self.items} items, {self.cached} cached, "
            f"{self.claimed_elsewhere} claimed by another run, {self.in_open_batches} in open "
            f"batches -> {self.to_send} to send",
            f"  prompt tokens      {self.prompt_tokens:>14,}  {self.prompt_method}",
            f"  completion tokens  {self.completion_tokens:>14,}  {self.completion_method}",
        ]
        for lane, cost in self.costs.items():
            shown = "no price known (pass --prices FILE or --price-prompt/--price-completion)" \
                if cost is None else f"{cost:,.4f}"
            lines.append(f"  cost, {lane + ' lane':<12} {shown}")
        if self.price_source:
            lines.append(f"  prices from {self.price_source}")
        if self.seconds_online is not None:
            lines.append(f"  time online        {_duration(self.seconds_online):>14}  at "
                         f"{self.limits}")
        else:
            lines.append("  time online        unknown (no --rpm/--tpm: concurrency adapts); "
                         "batch lane: within the provider's 24 h window")
        lines.append("nothing was sent")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    h, rem = divmod(round(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s"


def _even_sample(items: Sequence[WorkItem], k: int) -> list[WorkItem]:
    if len(items) <= k:
        return list(items)
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def cached_usage(store: ResultStore, benchmark: str, scorer: str,
                 keys: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Row key -> (prompt, completion) tokens the provider counted, from the ``meta`` of the
    cached rows with these keys (where the cache holds them)."""
    read = getattr(store, "read", None)
    if read is None or not keys:
        return {}
    try:
        table = read(benchmark, scorer, text=True)
    except TypeError:  # the choice cache returns every column without being asked
        table = read(benchmark, scorer)
    except Exception:
        return {}
    if "meta" not in table.column_names:
        return {}
    wanted = set(keys)
    out: dict[str, tuple[int, int]] = {}
    for key, meta in zip(table["key"].to_pylist(), table["meta"].to_pylist(), strict=True):
        if key not in wanted or key in out or not meta:
            continue
        try:
            m = json.loads(meta)
            out[key] = (int(m["prompt_tokens"]), int(m["completion_tokens"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def plan_run(judge: Judge, items: Sequence[WorkItem], store: ResultStore, *, benchmark: str,
             model: str, backend: str, max_tokens: int, samples: int,
             rpm: float | None = None, tpm: float | None = None,
             prices: Prices | None = None, cache_root: Path | None = None) -> RunPlan:
    """The plan of sending ``items`` for ``judge`` into ``store``; sends nothing."""
    completed = store.completed_keys(benchmark, judge.identity)
    p = plan(items, completed)
    pending = p.pending
    elsewhere = in_batches = 0
    if cache_root is not None:
        open_keys = BatchJournal(cache_root).open_keys(judge.identity)
        claims = Claims(cache_root)
        # One listing instead of a stat per item: runs of millions of items are planned too.
        held = {p.stem for p in claims.root.glob("*.claim")} if claims.root.is_dir() else set()
        keep = []
        for it in pending:
            if it.key in open_keys:
                in_batches += 1
            elif it.key in held and claims.claimed_elsewhere(it.key):
                elsewhere += 1
            else:
                keep.append(it)
        pending = keep
    count, method = token_counter(model, backend)
    sample = _even_sample(pending, COUNT_LIMIT)
    counted = sum(_item_tokens(judge, it, count) for it in sample)
    scale = len(pending) / len(sample) if sample else 0.0
    prompt = counted * scale
    if len(sample) < len(pending):
        method += f", counted on {len(sample):,} of {len(pending):,} requests"
    # Calibrate on what the provider counted for cached items of the same judge.
    waiting = {it.key for it in p.pending}
    done = _even_sample([it for it in p_unique(items) if it.key not in waiting], 500)
    usage = cached_usage(store, benchmark, judge.identity,
                         [it.row_keys[0] for it in done if it.row_keys]) if pending else {}
    measured = [(it, usage[it.row_keys[0]]) for it in done
                if it.row_keys and it.row_keys[0] in usage]
    completion_per = float(max_tokens * samples)
    completion_method = f"max_tokens x {samples} sample(s) (an upper bound)"
    if measured:
        completion_per = sum(c for _, (_, c) in measured) / len(measured)
        completion_method = f"measured mean of {len(measured)} cached answers"
        if not method.startswith("exact"):
            ours = sum(_item_tokens(judge, it, count) for it, _ in measured)
            theirs = sum(pr for _, (pr, _) in measured)
            if ours > 0 and theirs > 0:
                prompt *= theirs / ours
                method += f", calibrated on {len(measured)} cached answers"
    completion = completion_per * len(pending)
    costs: dict[str, float | None] = {
        lane: (None if prices is None else round(prices.cost(prompt, completion, lane), 6))
        for lane in ("online", "batch")}
    seconds, limits = None, ""
    if rpm or tpm:
        per_min = [x for x in ((len(pending) / rpm) if rpm else None,
                               ((prompt + completion) / tpm) if tpm else None) if x is not None]
        seconds = 60.0 * max(per_min)
        limits = ", ".join(f"{v:g} {u}/min" for v, u in ((rpm, "requests"), (tpm, "tokens"))
                           if v)
    return RunPlan(
        scorer=judge.identity, model=model, items=p.items, cached=p.cached,
        claimed_elsewhere=elsewhere, in_open_batches=in_batches, to_send=len(pending),
        samples_per_request=samples, prompt_tokens=round(prompt), prompt_method=method,
        completion_tokens=round(completion), completion_method=completion_method,
        costs=costs, price_source=None if prices is None else prices.source,
        seconds_online=seconds, limits=limits)


def p_unique(items: Sequence[WorkItem]) -> list[WorkItem]:
    """``items`` without duplicate keys (first wins), as the scheduler sees them."""
    seen: set[str] = set()
    out = []
    for it in items:
        if it.key not in seen:
            seen.add(it.key)
            out.append(it)
    return out


def estimate_error(planned: Mapping[str, Any], actual: Mapping[str, Any]) -> dict[str, float]:
    """Relative error of a plan against a run's counts (items, prompt tokens, completion
    tokens, cost), (planned - actual) / actual; keys where the actual is 0 are left out."""
    pairs = {"items": (planned.get("to_send"), actual.get("completed", 0) + actual.get("failed", 0)),
             "prompt_tokens": (planned.get("prompt_tokens"), actual.get("prompt_tokens")),
             "completion_tokens": (planned.get("completion_tokens"),
                                   actual.get("completion_tokens"))}
    out = {}
    for name, (p, a) in pairs.items():
        if isinstance(p, int | float) and isinstance(a, int | float) and a:
            out[name] = round((p - a) / a, 4)
    return out


def plan_items(judge: Judge, items: Sequence[WorkItem], config: LLMConfig,
               store: ResultStore, *, benchmark: str, samples: int) -> RunPlan:
    """:func:`plan_run` with the model, limits and prices an :class:`LLMConfig` gives."""
    root = getattr(store, "root", None)
    prices = None if config.backend == "vllm" and not config.prices else prices_for(
        str(config.model), config.prices, prompt_per_1k=float(config.price_prompt or 0.0),
        completion_per_1k=float(config.price_completion or 0.0))
    return plan_run(judge, items, store, benchmark=benchmark, model=str(config.model),
                    backend=str(config.backend), max_tokens=int(config.max_tokens),
                    samples=samples, rpm=config.rpm, tpm=config.tpm, prices=prices,
                    cache_root=None if root is None else Path(root))
