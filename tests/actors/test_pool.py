"""BackendPool over in-process backends: least-in-flight dispatch, reroutes, one result each."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pluralign.actors.pool import (
    ActorPlacement,
    BackendHost,
    BackendPool,
    SlotDied,
    _RaySlot,
    bundle_of,
    describe_hosts,
    one_per_request,
    split_budget,
)
from pluralign.engine.run.backend import (
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    Message,
    Sample,
)


def reqs(k: int, tag: str = "r") -> list[GenerationRequest]:
    return [GenerationRequest(id=f"{tag}{i}", messages=(Message("user", str(i)),))
            for i in range(k)]


class GatedBackend:
    """Answers only when the test opens the gate; records what it was sent."""

    name = "gated"

    def __init__(self, gate: asyncio.Event, *, broken: bool = False) -> None:
        self.gate = gate
        self.broken = broken
        self.batches: list[list[str]] = []

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.batches.append([r.id for r in requests])
        await self.gate.wait()
        if self.broken:
            raise RuntimeError("engine fell over")
        return [GenerationResult(r.id, (Sample(f"ok {r.id}"),)) for r in requests]

    async def close(self) -> None:
        return None


def test_batches_go_to_the_least_busy_backend() -> None:
    async def main() -> tuple[list[GatedBackend], list[int], list[list[GenerationResult]]]:
        gate = asyncio.Event()
        backends = [GatedBackend(gate), GatedBackend(gate)]
        pool = BackendPool.of_backends(backends)
        await pool.start()
        sizes = [3, 1, 1, 2]
        tasks = []
        for i, k in enumerate(sizes):
            tasks.append(asyncio.ensure_future(pool.generate(reqs(k, tag=f"b{i}-"))))
            await asyncio.sleep(0)  # let it be dispatched before the next one
        in_flight = pool.in_flight()
        gate.set()
        results = await asyncio.gather(*tasks)
        await pool.close()
        return backends, in_flight, results

    backends, in_flight, results = asyncio.run(main())
    # 3 -> A; 1 -> B (0 < 3); 1 -> B (1 < 3); 2 -> B (2 < 3): B ends with 4, A with 3.
    assert [len(b.batches) for b in backends] == [1, 3]
    assert in_flight == [3, 4]
    for batch in results:
        assert all(r.ok for r in batch)


def test_a_raising_backend_is_routed_around() -> None:
    async def main() -> tuple[list[GenerationResult], BackendPool]:
        gate = asyncio.Event()
        gate.set()
        pool = BackendPool.of_backends([GatedBackend(gate, broken=True), GatedBackend(gate)])
        return await pool.generate(reqs(4)), pool

    results, pool = asyncio.run(main())
    assert [r.id for r in results] == [f"r{i}" for i in range(4)]
    assert all(r.ok for r in results)
    assert pool.reroutes == 1


def test_when_every_backend_fails_each_request_still_gets_one_failure() -> None:
    async def main() -> list[GenerationResult]:
        gate = asyncio.Event()
        gate.set()
        pool = BackendPool.of_backends([GatedBackend(gate, broken=True)], max_reroutes=2)
        return await pool.generate(reqs(3))

    results = asyncio.run(main())
    assert [r.id for r in results] == ["r0", "r1", "r2"]
    assert all(r.failure and r.failure.kind is FailureKind.FATAL_REPLICA for r in results)


def test_one_per_request_fills_gaps_and_drops_strays() -> None:
    rs = reqs(3)
    got = [GenerationResult("r2"), GenerationResult("r0"), GenerationResult("r0",
           failure=Failure(FailureKind.TRANSIENT, "dup")), GenerationResult("stray")]
    out = one_per_request(rs, got)
    assert [r.id for r in out] == ["r0", "r1", "r2"]
    assert out[0].ok and out[2].ok
    assert out[1].failure is not None and out[1].failure.kind is FailureKind.TRANSIENT


def test_empty_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BackendPool([])


def openai_host(url: str) -> BackendHost:
    from pluralign.actors.backends.api_client import APIClientConfig
    from tests.fake_openai import FAKE_KEY_ENV

    return BackendHost("openai", APIClientConfig(base_url=url, api_key_env=FAKE_KEY_ENV))


def answers(host: BackendHost, k: int = 2) -> list[GenerationResult]:
    async def main() -> list[GenerationResult]:
        try:
            return await host.generate(reqs(k))
        finally:
            await host.close()

    return asyncio.run(main())


def test_backend_host_builds_the_registered_backend(fake_server, fake_key) -> None:  # type: ignore[no-untyped-def]
    host = openai_host(fake_server.url)
    results = answers(host)
    assert all(r.ok for r in results)
    assert host.ping() == "openai"


class DrainableBackend(GatedBackend):
    """A gated backend that refuses to send once drained, as the API client does."""

    drained = False

    def drain(self) -> None:
        self.drained = True

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if self.drained:
            return [GenerationResult(r.id, failure=Failure(
                FailureKind.FATAL_REPLICA, "interrupted: not sent")) for r in requests]
        return await super().generate(requests)


def test_draining_the_pool_stops_every_worker_and_keeps_answers_in_flight() -> None:
    async def main() -> tuple[list[GenerationResult], list[GenerationResult]]:
        gate = asyncio.Event()
        a, b = DrainableBackend(gate), DrainableBackend(gate)
        pool = BackendPool.of_backends([a, b])
        in_flight = asyncio.create_task(pool.generate(reqs(2, "early")))
        while not (a.batches or b.batches):  # the batch is handed out, waiting on the gate
            await asyncio.sleep(0.001)
        pool.drain()
        assert a.drained and b.drained
        gate.set()
        early = await in_flight
        late = await pool.generate(reqs(2, "late"))
        await pool.close()
        return early, late

    early, late = asyncio.run(main())
    assert [r.ok for r in early] == [True, True]  # sent before the stop: answered
    assert all(r.failure is not None and "interrupted" in r.failure.message for r in late)


def test_a_host_drained_before_it_started_starts_drained(fake_server, fake_key) -> None:  # type: ignore[no-untyped-def]
    host = openai_host(fake_server.url)
    host.drain()
    results = answers(host)
    assert all(r.failure is not None and "interrupted" in r.failure.message for r in results)
    assert fake_server.stats()["total"] == 0


def test_actors_split_the_budget_unless_redis_shares_it() -> None:
    from pluralign.actors.backends.api_client import APIClientConfig

    cfg = APIClientConfig(rpm=120, tpm=None)
    assert (split_budget(cfg, 4).rpm, split_budget(cfg, 4).tpm) == (30, None)
    assert split_budget(cfg, 1) is cfg
    shared = APIClientConfig(rpm=120, redis_url="redis://127.0.0.1:1/0")
    assert split_budget(shared, 4).rpm == 120


def test_a_bundle_holds_what_one_actor_asks_for_custom_resources_included() -> None:
    assert bundle_of({"num_cpus": 0.1, "resources": {"api_client": 1}}) == {
        "CPU": 0.1, "api_client": 1.0}
    assert bundle_of({"num_gpus": 2, "num_cpus": 0}) == {"GPU": 2.0}
    assert bundle_of({}) == {"CPU": 1.0}  # Ray's default for an actor that names nothing


def test_an_in_process_pool_reports_no_hosts() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        gate.set()
        pool = BackendPool.of_backends([GatedBackend(gate)])
        await pool.generate(reqs(2))
        assert pool.host_report() is None
        await pool.close()

    asyncio.run(main())


def test_the_host_line_names_actors_items_reroutes_and_lost_hosts() -> None:
    line = describe_hosts({
        "placement": "spread", "actors_by_host": {"10.0.0.2": 2, "10.0.0.3": 2},
        "items_by_host": {"10.0.0.2": 70, "10.0.0.3": 10}, "rerouted_items": 6,
        "rerouted_from": {"10.0.0.3": 6}, "hosts_lost": ["10.0.0.3"],
        "hosts_joined": ["10.0.0.4"], "items_after_join": {"10.0.0.4": 9}})
    assert line == ("placement spread: actors by host: 10.0.0.2 2, 10.0.0.3 2; items by host: "
                    "10.0.0.2 70, 10.0.0.3 10; rerouted 6 items (from 10.0.0.3 6); "
                    "hosts lost: 10.0.0.3; hosts joined: 10.0.0.4 (items after joining: "
                    "10.0.0.4 9)")


def test_an_unknown_placement_is_refused_before_anything_is_placed() -> None:
    pytest.importorskip("ray")
    with pytest.raises(ValueError, match="spread, pack"):
        ActorPlacement("scatter", 2, {"num_cpus": 0.1})  # type: ignore[arg-type]


class _StandInSlot(_RaySlot):
    """A Ray slot whose Ray calls are recorded instead of made: its actor answers (or dies
    once, when ``dies``), and a replacement never comes up (a restart waiting on a dead GCS)."""

    def __init__(self, index: int, *, dies: bool = False) -> None:
        super().__init__(index, lambda: None, start_timeout=1.0)
        self.dies = dies
        self.ray_calls: list[str] = []

    async def start(self) -> None:
        self.ready.set()

    async def call(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if self.dies:
            self.dies = False
            raise SlotDied(f"actor {self.index} failed: ActorDiedError")
        return [GenerationResult(r.id, (Sample("ok"),)) for r in requests]

    async def replace(self) -> None:
        self.ray_calls.append("start a replacement")
        await asyncio.Event().wait()

    async def close(self) -> None:
        self.ray_calls.append("close and kill the actor")


class _StandInPlacement:
    strategy = "pack"  # no watching for hosts that join

    def __init__(self) -> None:
        self.removed = False

    async def ready(self, timeout: float) -> None:
        return None

    def remove(self) -> None:
        self.removed = True


def test_a_pool_whose_ray_is_gone_closes_without_a_ray_call() -> None:
    """After ``abandon`` (the job took down a runtime a signal broke) closing makes no Ray
    call — each would wait on the dead GCS until Ray aborts the process — and a replacement
    still starting is cancelled, not awaited."""
    async def main() -> tuple[_StandInSlot, _StandInSlot, _StandInPlacement, list[str]]:
        dying, live = _StandInSlot(0, dies=True), _StandInSlot(1)
        pool = BackendPool([dying, live])
        placement = _StandInPlacement()
        pool.placement = placement  # type: ignore[assignment]
        results = await pool.generate(reqs(3))  # rerouted to the live actor
        pool.abandon()
        await asyncio.wait_for(pool.close(), 10)
        return dying, live, placement, [r.samples[0].text for r in results]

    dying, live, placement, texts = asyncio.run(main())
    assert texts == ["ok"] * 3
    assert dying.ray_calls == ["start a replacement"]
    assert live.ray_calls == []
    assert placement.removed is False


def test_a_pool_whose_ray_is_intact_closes_its_actors_and_placement_group() -> None:
    async def main() -> tuple[list[str], bool]:
        slot, placement = _StandInSlot(0), _StandInPlacement()
        pool = BackendPool([slot])
        pool.placement = placement  # type: ignore[assignment]
        await pool.generate(reqs(1))
        await pool.close()
        return slot.ray_calls, placement.removed

    assert asyncio.run(main()) == (["close and kill the actor"], True)


def test_a_drained_pool_starts_no_replacement_for_an_actor_that_dies() -> None:
    """After the first signal a dead actor is retired, not replaced: a fresh actor would send
    nothing, and starting one calls into a Ray whose GCS the signal may have killed."""
    async def main() -> tuple[_StandInSlot, list[str]]:
        dying, live = _StandInSlot(0, dies=True), _StandInSlot(1)
        pool = BackendPool([dying, live])
        await pool.start()
        pool.drain()
        results = await pool.generate(reqs(2))  # rerouted to the live actor
        await asyncio.wait_for(pool.close(), 10)  # a replacement would never come up
        return dying, [r.samples[0].text for r in results]

    dying, texts = asyncio.run(main())
    assert texts == ["ok", "ok"]
    assert dying.retired
    assert "start a replacement" not in dying.ray_calls
