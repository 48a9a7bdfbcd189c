"""Generation jobs: cached, deduplicated, one outcome per item, reruns send nothing."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pluralign.engine.backend import (
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Message,
    Sample,
)
from pluralign.engine.errors import CacheSchemaError
from pluralign.engine.spica.gencache import GenerationCache, work_key
from pluralign.engine.spica.generate import (
    RetryPolicy,
    aligned_outputs,
    class_response_items,
    grow_bank,
    run_items,
)
from pluralign.engine.spica.retrieval import Retriever
from pluralign.schemas.spica import DEFAULT_CLASSES, BankMeta, ResponseClass
from tests.engine.spica.helpers import bank, rater, scenario

FAST = RetryPolicy(max_attempts=3, backoff=0.0)


class FakeBackend:
    """Answers every request with a text derived from it; can fail on cue."""

    name = "fake"

    def __init__(self, script: dict[str, list[Failure]] | None = None,
                 explode: bool = False) -> None:
        self.sent: list[GenerationRequest] = []
        self.script = script or {}
        self.explode = explode
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
                out.append(GenerationResult(r.id, samples=(Sample(f"re: {user} #{r.seed}"),)))
        return out

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
    rep = run_items(items, f1, "m", cache, policy=FAST)
    assert rep.failed == 1 and rep.sent == 4  # p1 once (fatal), p2 three times
    fails = [o for o in rep.outcomes.values() if not o.ok]
    assert len(fails) == 1 and fails[0].error == "fatal_item: too long"
    assert rep.texts(items[1]) == ("re: Is fasting healthy? #0",)
    stored = cache.load()
    assert len(stored) == 2 and sum(not v.ok for v in stored.values()) == 1
    f2 = Factory()
    rep2 = run_items(items, f2, "m", cache, policy=FAST)
    assert f2.sent == 1 and rep2.cached == 1 and rep2.failed == 0  # only the failure again


def test_transient_failures_give_up_after_max_attempts(tmp_path):
    items = class_response_items("m", PROMPTS[:1], META.classes[:1], per_class=1)
    script = {"vote": [Failure(FailureKind.TRANSIENT, "503")] * 5}
    f = Factory(script=script)
    rep = run_items(items, f, "m", None, policy=FAST)
    assert f.sent == 3 and rep.failed == 1


def test_a_raising_backend_fails_items_not_the_job(tmp_path):
    items = class_response_items("m", PROMPTS, META.classes[:2], per_class=1)
    f = Factory(explode=True)
    rep = run_items(items, f, "m", GenerationCache(tmp_path / "c"), policy=FAST)
    assert len(rep.outcomes) == 4 and rep.failed == 4
    assert all("engine died" in (o.error or "") for o in rep.outcomes.values())


def test_cache_of_another_version_is_refused(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    pq.write_table(pa.table({"key": ["x"]}), root / "part-old.parquet")
    with pytest.raises(CacheSchemaError, match=r"part-old\.parquet"):
        GenerationCache(root).load()


_HAS_FAKE_SERVER = all(importlib.util.find_spec(m) is not None
                       for m in ("pluralign.actors.fake_server", "pluralign.actors.api_client", "aiohttp"))


@pytest.mark.skipif(not _HAS_FAKE_SERVER, reason="fake server or API client not available")
def test_end_to_end_through_the_local_fake_server(tmp_path):
    from pluralign.actors.api_client import APIClientConfig, OpenAIBackend
    from pluralign.actors.fake_server import FakeOpenAIServer

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
