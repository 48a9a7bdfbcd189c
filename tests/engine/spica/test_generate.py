"""Generation jobs through the scheduler: cached, deduplicated, one outcome per item, reruns
send nothing, and a bad batch, a budget or an interrupt never loses or crashes anything."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
from collections.abc import Sequence
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.errors import CacheSchemaError
from pluralign.engine.judges import ComparativeJudge, JudgeSettings, WorkItem
from pluralign.engine.run.backend import (
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Message,
    Sample,
    Usage,
)
from pluralign.engine.run.scheduler import SchedulerConfig
from pluralign.engine.spica.generate import (
    aligned_outputs,
    class_response_items,
    grow_bank,
    run_items,
    run_items_async,
)
from pluralign.engine.spica.retrieval import Retriever
from pluralign.engine.store.generations import GenerationCache, work_key
from pluralign.schemas.spica import DEFAULT_CLASSES, BankMeta, ResponseClass
from tests.engine.spica.helpers import bank, rater, scenario

FAST = SchedulerConfig(max_attempts=3, retry_backoff=0.0, batch_size=4, max_in_flight=8)


class FakeBackend:
    """Answers every request with a text derived from it; can fail on cue."""

    name = "fake"

    def __init__(self, script: dict[str, list[Failure]] | None = None,
                 explode: bool = False, short: bool = False) -> None:
        self.sent: list[GenerationRequest] = []
        self.script = script or {}
        self.explode = explode
        self.short = short
        self.closed = False

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.sent.extend(requests)
        if self.explode:
            raise RuntimeError("engine died")
        out = []
        for r in requests:
            user = r.messages[-1].content
            queue = next((v for k, v in self.script.items() if k in user), None)
            if queue:
                out.append(GenerationResult(r.id, failure=queue.pop(0)))
            else:
                out.append(GenerationResult(r.id, samples=(Sample(f"re: {user} #{r.seed}"),),
                                            usage=Usage(10, 5)))
        return out[:-1] if self.short else out

    async def close(self) -> None:
        self.closed = True


class Factory:
    def __init__(self, **kw: object) -> None:
        self.made: list[FakeBackend] = []
        self.kw = kw

    def __call__(self) -> FakeBackend:
        b = FakeBackend(**self.kw)  # type: ignore[arg-type]
        self.made.append(b)
        return b

    @property
    def sent(self) -> int:
        return sum(len(b.sent) for b in self.made)


META = BankMeta("grown", tuple(ResponseClass(c, d) for c, d in DEFAULT_CLASSES))
PROMPTS = [("p1", "Should I vote?"), ("p2", "Is fasting healthy?")]


def test_grow_bank_three_per_class_and_rerun_sends_nothing(tmp_path):
    cache = GenerationCache(tmp_path / "cache")
    f1 = Factory()
    b, report = grow_bank(META, PROMPTS, f1, "fake-model", cache)
    assert f1.sent == 2 * 5 * 3 and report.sent == 30 and report.cached == 0
    assert f1.made[0].closed
    for sc in b.scenarios:
        for c in b.classes:
            assert len(sc.responses[c]) == 3
            assert len(set(sc.responses[c])) == 3  # seeds 0, 1, 2 are distinct samples
    f2 = Factory()
    b2, report2 = grow_bank(META, PROMPTS, f2, "fake-model", cache)
    assert f2.made == [] and report2.sent == 0 and report2.cached == 30
    assert b2.content_hash == b.content_hash


def _rated_bank():
    return bank([
        scenario("A", "vote election ballot", [rater("r1", ["g"], [5, 2, 1]),
                                               rater("r2", ["h"], [1, 2, 5])]),
        scenario("B", "vote election", [rater("r3", ["g"], [3, 4, 3]),
                                        rater("r4", ["h"], [2, 2, 4])]),
    ])


def test_aligned_outputs_cached_and_deduplicated(tmp_path):
    r = Retriever(_rated_bank())
    queries = [("q1", "vote today?"), ("q2", "which ballot?")]
    setups = ["control", "P-I", "C-I", "P-R", "C-R"]
    cache = GenerationCache(tmp_path / "c")
    f1 = Factory()
    rows, rep = aligned_outputs(r, None, queries, ["g", "h"], setups, 2, f1, "m", cache)
    assert len(rows) == 2 * 2 * 5
    # The control prompt does not depend on the group: sent once per query.
    assert rep.duplicates == 2 and f1.sent == 18 and rep.sent == 18
    assert all(row.text and row.error is None for row in rows)
    assert {row.retrieved for row in rows if row.setup != "control"} <= {("A", "B"), ("B", "A")}
    by = {(row.query, row.group, row.setup): row for row in rows}
    assert by["q1", "g", "control"].key == by["q1", "h", "control"].key
    assert by["q1", "g", "C-R"].key != by["q1", "h", "C-R"].key
    f2 = Factory()
    rows2, rep2 = aligned_outputs(r, None, queries, ["g", "h"], setups, 2, f2, "m", cache)
    assert f2.made == [] and rep2.sent == 0 and rep2.cached == 18
    assert [x.text for x in rows2] == [x.text for x in rows]


def test_cache_key_covers_every_field():
    base = GenerationRequest("id", (Message("system", "s"), Message("user", "u")))
    key = work_key("model-a", base)
    assert work_key("model-a", replace(base, id="other")) == key
    variants = [
        work_key("model-b", base),
        work_key("model-a", replace(base, messages=(Message("system", "s"),
                                                    Message("user", "v")))),
        work_key("model-a", replace(base, messages=(Message("user", "s"),
                                                    Message("user", "u")))),
        work_key("model-a", replace(base, temperature=0.7)),
        work_key("model-a", replace(base, seed=1)),
        work_key("model-a", replace(base, max_tokens=10)),
        work_key("model-a", replace(base, n=2)),
        work_key("model-a", replace(base, json_schema={"type": "string"})),
    ]
    assert key not in variants and len(set(variants)) == len(variants)


def test_failures_are_recorded_then_retried_next_run(tmp_path):
    cache = GenerationCache(tmp_path / "c")
    items = class_response_items("m", PROMPTS, META.classes[:1], per_class=1)
    script = {"vote": [Failure(FailureKind.FATAL_ITEM, "too long")],
              "fasting": [Failure(FailureKind.TRANSIENT, "503"),
                          Failure(FailureKind.RATE_LIMITED, "slow down", retry_after=0.01)]}
    f1 = Factory(script=script)
    rep = run_items(items, f1, "m", cache, config=FAST, log=None)
    assert rep.failed == 1 and rep.sent == 4  # p1 once (fatal), p2 three times
    fails = [o for o in rep.outcomes.values() if not o.ok]
    assert len(fails) == 1 and fails[0].error == "fatal_item: too long"
    assert rep.texts(items[1]) == ("re: Is fasting healthy? #0",)
    stored = cache.load()
    assert len(stored) == 2 and sum(not v.ok for v in stored.values()) == 1
    f2 = Factory()
    rep2 = run_items(items, f2, "m", cache, config=FAST, log=None)
    assert f2.sent == 1 and rep2.cached == 1 and rep2.failed == 0  # only the failure again


def test_transient_failures_give_up_after_max_attempts(tmp_path):
    items = class_response_items("m", PROMPTS[:1], META.classes[:1], per_class=1)
    script = {"vote": [Failure(FailureKind.TRANSIENT, "503")] * 5}
    f = Factory(script=script)
    rep = run_items(items, f, "m", None, config=FAST, log=None)
    assert f.sent == 3 and rep.failed == 1


def test_a_raising_backend_fails_items_not_the_job(tmp_path):
    items = class_response_items("m", PROMPTS, META.classes[:2], per_class=1)
    f = Factory(explode=True)
    rep = run_items(items, f, "m", GenerationCache(tmp_path / "c"), config=FAST, log=None)
    assert len(rep.outcomes) == 4 and rep.failed == 4 and f.sent == 4 * FAST.max_attempts
    assert all("engine died" in (o.error or "") for o in rep.outcomes.values())
    assert f.made[0].closed


def test_a_backend_answering_the_wrong_count_fails_items_not_the_job(tmp_path):
    items = class_response_items("m", PROMPTS, META.classes[:2], per_class=1)
    f = Factory(short=True)
    cache = GenerationCache(tmp_path / "c")
    rep = run_items(items, f, "m", cache, config=replace(FAST, batch_size=2), log=None)
    assert len(rep.outcomes) == 4 and rep.failed == 4
    assert all("returned 1 results for 2 requests" in (o.error or "")
               for o in rep.outcomes.values())
    assert {k for k, v in cache.load().items() if not v.ok} == set(rep.outcomes)


def test_a_factory_that_raises_sends_nothing_and_raises(tmp_path):
    items = class_response_items("m", PROMPTS, META.classes[:1], per_class=1)

    def broken() -> FakeBackend:
        raise KeyError("API key variable OPENAI_KEY is not set")

    with pytest.raises(KeyError, match="OPENAI_KEY"):
        run_items(items, broken, "m", GenerationCache(tmp_path / "c"),
                  config=replace(FAST, batch_size=1, max_in_flight=1), log=None)
    assert not list((tmp_path / "c").glob("part-*.parquet"))  # nothing recorded as failed


def test_a_token_budget_stops_and_every_item_still_has_one_outcome(tmp_path):
    items = class_response_items("m", PROMPTS, META.classes, per_class=2)  # 20 items
    cache = GenerationCache(tmp_path / "c")
    cfg = replace(FAST, batch_size=1, max_in_flight=1, token_budget=45)
    f = Factory()
    rep = run_items(items, f, "m", cache, config=cfg, log=None)
    assert rep.stopped == "token budget" and rep.schedule is not None
    assert len(rep.outcomes) == 20 and f.sent == 3  # 15 tokens each: the third crosses 45
    not_sent = [o for o in rep.outcomes.values() if o.error == "not sent: token budget"]
    assert len(not_sent) == rep.not_sent == 17 and rep.failed == 17
    assert set(cache.load()) == {k for k, o in rep.outcomes.items() if o.ok}  # no fake failures
    f2 = Factory()
    rep2 = run_items(items, f2, "m", cache, config=FAST, log=None)
    assert rep2.cached == 3 and f2.sent == 17 and rep2.failed == 0


def test_an_interrupt_keeps_the_answers_received_and_a_rerun_sends_the_rest(tmp_path):
    items = class_response_items("m", PROMPTS, META.classes, per_class=2)
    cache = GenerationCache(tmp_path / "c")
    stops: list = []

    class Interrupting(FakeBackend):
        async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
            if not self.sent:
                stops[0]("interrupted")  # arrives while the first batch is in flight
            await asyncio.sleep(0.01)
            return await super().generate(requests)

    backend = Interrupting()
    cfg = replace(FAST, batch_size=2, max_in_flight=2)
    rep = asyncio.run(run_items_async(items, lambda: backend, "m", cache, config=cfg,
                                      log=None, on_start=stops.append))
    assert rep.schedule is not None and rep.schedule.stop_kind == "interrupted"
    assert len(backend.sent) == 2 and backend.closed
    assert len(rep.outcomes) == 20 and rep.not_sent == 18
    assert set(cache.load()) == {r.id for r in backend.sent}
    f2 = Factory()
    rep2 = run_items(items, f2, "m", cache, config=FAST, log=None)
    assert rep2.cached == 2 and f2.sent == 18


def test_ctrl_c_stops_sending_and_grow_bank_raises_after_storing(tmp_path):
    """Inside a command (the command line wraps each in handled_by_command), the first Ctrl-C
    stops sending and keeps the batch in flight."""
    from pluralign.engine.run.signals import handled_by_command
    from pluralign.engine.spica.generate import GenerationInterrupted

    cache = GenerationCache(tmp_path / "c")

    class CtrlC(FakeBackend):
        async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
            if not self.sent:
                os.kill(os.getpid(), signal.SIGINT)  # as if pressed while this batch is out
            await asyncio.sleep(0.05)
            return await super().generate(requests)

    backend = CtrlC()
    cfg = replace(FAST, batch_size=3, max_in_flight=3)
    try:
        with pytest.raises(GenerationInterrupted) as caught, handled_by_command():
            grow_bank(META, PROMPTS, lambda: backend, "m", cache, config=cfg, log=None)
    except KeyboardInterrupt:  # GenerationInterrupted is one: only a plain one gets here
        pytest.fail("Ctrl-C was not turned into a clean stop")
    rep = caught.value.report
    assert len(backend.sent) == 3 and rep.not_sent == 30 - 3
    assert len(cache.load()) == 3  # the batch in flight was stored


def test_a_library_call_leaves_ctrl_c_to_its_caller(tmp_path):
    """Outside a command (a script or notebook using the library), nothing takes SIGINT over:
    the caller gets its plain KeyboardInterrupt, and its own handler stays in place."""
    from pluralign.engine.spica.generate import GenerationInterrupted

    class CtrlC(FakeBackend):
        async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
            if not self.sent:
                os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.05)
            return await super().generate(requests)

    # The caller's own handler: Python's default one (a shell starts background jobs, and so
    # this test process, with SIGINT ignored).
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            grow_bank(META, PROMPTS, lambda: CtrlC(), "m", GenerationCache(tmp_path / "c"),
                      config=replace(FAST, batch_size=3, max_in_flight=3), log=None)
        assert not isinstance(caught.value, GenerationInterrupted)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)


def test_batch_size_and_concurrency_set_the_schedulers_batching():
    items = class_response_items("m", PROMPTS, META.classes, per_class=1)  # 10 items
    calls: list[int] = []
    busy = {"now": 0, "most": 0}

    class Counting(FakeBackend):
        async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
            calls.append(len(requests))
            busy["now"] += 1
            busy["most"] = max(busy["most"], busy["now"])
            await asyncio.sleep(0.01)
            busy["now"] -= 1
            return await super().generate(requests)

    rep = run_items(items, Counting, "m", None, batch_size=3, concurrency=2, log=None)
    assert rep.failed == 0 and sum(calls) == 10
    assert max(calls) <= 3 and busy["most"] <= 2


def test_two_runs_on_one_cache_send_each_generation_once(tmp_path):
    items = class_response_items("m", PROMPTS, META.classes, per_class=2)  # 20 items
    cache_dir = tmp_path / "c"
    f = Factory()

    class Slow(FakeBackend):
        async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
            await asyncio.sleep(0.02)
            return await super().generate(requests)

    def make() -> FakeBackend:
        b = Slow()
        f.made.append(b)
        return b

    async def both() -> list:
        cfg = SchedulerConfig(batch_size=2, max_in_flight=4, flush_seconds=0.05,
                              claim_poll_seconds=0.05)
        return list(await asyncio.gather(*(
            run_items_async(items, make, "m", GenerationCache(cache_dir), config=cfg, log=None)
            for _ in range(2))))

    a, b = asyncio.run(both())
    sent = [r.id for backend in f.made for r in backend.sent]
    assert sorted(sent) == sorted(it.key for it in items)  # each item bought once in all
    assert a.failed == b.failed == 0 and len(a.outcomes) == len(b.outcomes) == 20
    assert all(a.texts(it) == b.texts(it) and a.texts(it) for it in items)
    assert not list((cache_dir / ".claims").glob("*.claim"))


def test_items_must_be_generation_items():
    judge = ComparativeJudge(synthetic_benchmark(2, (2, 2), 2, 5, seed=0), JudgeSettings("m"))
    with pytest.raises(ValueError, match="not a generation item"):
        run_items(judge.items([0], 1), Factory(), "m", None, log=None)


def test_one_work_item_type_for_judges_and_generation():
    gen = class_response_items("m", PROMPTS[:1], META.classes[:1], per_class=2)
    judge = ComparativeJudge(synthetic_benchmark(2, (2, 2), 2, 5, seed=0), JudgeSettings("m"))
    scored = judge.items([0], 1)
    assert all(isinstance(it, WorkItem) for it in gen + scored)
    assert [it.row_keys for it in gen] == [(it.key,) for it in gen]
    assert all(it.request is not None and it.request.id == it.key for it in gen)
    assert [it.sample for it in gen] == [0, 1] and gen[1].labels["sample"] == "1"
    assert len({hash(it) for it in gen + scored}) == len(gen) + len(scored)  # hashable


def test_cache_of_another_version_is_refused(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    pq.write_table(pa.table({"key": ["x"]}), root / "part-old.parquet")
    with pytest.raises(CacheSchemaError, match=r"part-old\.parquet"):
        GenerationCache(root).load()


_HAS_FAKE_SERVER = all(importlib.util.find_spec(m) is not None
                       for m in ("pluralign.actors.testing.fake_server", "pluralign.actors.backends.api_client", "aiohttp"))


@pytest.mark.skipif(not _HAS_FAKE_SERVER, reason="fake server or API client not available")
def test_end_to_end_through_the_local_fake_server(tmp_path):
    from pluralign.actors.backends.api_client import APIClientConfig, OpenAIBackend
    from pluralign.actors.testing.fake_server import FakeOpenAIServer

    r = Retriever(_rated_bank())
    queries = [("q1", "vote today?"), ("q2", "which ballot?")]
    cache = GenerationCache(tmp_path / "cache")
    with FakeOpenAIServer(require_auth=False) as srv:
        cfg = APIClientConfig(base_url=srv.url, model="fake-model", api_key_env=None)

        def factory() -> OpenAIBackend:
            return OpenAIBackend(cfg)

        rows, rep = aligned_outputs(r, None, queries, ["g", "h"], ["control", "C-R"], 2,
                                    factory, "fake-model", cache)
        assert srv.stats()["total"] == rep.sent == 6  # 2 controls + 2 x 2 C-R
        assert all(row.text for row in rows)
        rows2, rep2 = aligned_outputs(r, None, queries, ["g", "h"], ["control", "C-R"], 2,
                                      factory, "fake-model", cache)
        assert srv.stats()["total"] == 6 and rep2.sent == 0  # the rerun sent nothing
        assert [x.text for x in rows2] == [x.text for x in rows]
