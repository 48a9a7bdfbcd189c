"""API-client actors on a local Ray: killing one mid-run loses and duplicates nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pluralign.actors.backends.api_client import APIClientConfig
from pluralign.actors.pool import BackendPool, api_client_actors
from pluralign.engine.run.backend import GenerationRequest, GenerationResult, Message
from tests.fake_openai import FAKE_KEY_ENV

pytestmark = [pytest.mark.ray, pytest.mark.slow]
# `ray_local` (tests/conftest.py): a loopback runtime for this module, the planted key in the
# environment its actors inherit.


def batches(k: int, size: int) -> list[list[GenerationRequest]]:
    return [[GenerationRequest(id=f"b{b}-{i}", messages=(Message("user", f"{b}/{i}"),),
                               json_schema={"type": "object", "properties": {
                                   "score": {"type": "integer", "minimum": 0, "maximum": 9}},
                                   "required": ["score"]})
             for i in range(size)] for b in range(k)]


def test_killing_an_actor_mid_run_loses_nothing(ray_local: Any, make_fake_server: Any) -> None:
    server = make_fake_server(latency=1.0)
    cfg = APIClientConfig(base_url=server.url, api_key_env=FAKE_KEY_ENV, backoff_base=0.05)
    pool = api_client_actors(cfg, 2)
    work = batches(8, 3)

    async def main() -> tuple[list[list[GenerationResult]], Any, list[Any]]:
        await pool.start()
        tasks = [asyncio.ensure_future(pool.generate(b)) for b in work]
        while min(pool.in_flight()) == 0:  # both actors busy
            await asyncio.sleep(0.01)
        victim = pool.actors()[0]
        ray_local.kill(victim, no_restart=True)
        results = await asyncio.gather(*tasks)
        # The replacement serves new work.
        after = await pool.generate(batches(1, 2)[0])
        actors_after = pool.actors()
        await pool.close()
        return [*results, after], victim, actors_after

    results, victim, actors_after = asyncio.run(main())
    flat = [r for batch in results for r in batch]
    expected = [q.id for b in work for q in b] + ["b0-0", "b0-1"]
    assert [r.id for r in flat] == expected  # one result each, in order, none duplicated
    assert all(r.ok for r in flat)
    assert pool.reroutes >= 1
    assert victim not in actors_after
    hosts = pool.host_report()
    assert hosts is not None and hosts["actors_by_host"] == {"127.0.0.1": 2}
    assert sum(hosts["items_by_host"].values()) == len(flat)
    assert hosts["rerouted_items"] >= 1 and hosts["rerouted_from"].keys() == {"127.0.0.1"}
    assert hosts["hosts_lost"] == []  # the replacement runs on the same host: nothing lost


def test_spread_and_pack_place_every_actor_in_its_own_bundle(ray_local: Any,
                                                              make_fake_server: Any) -> None:
    from ray.util.placement_group import placement_group_table

    server = make_fake_server()
    cfg = APIClientConfig(base_url=server.url, api_key_env=FAKE_KEY_ENV)
    for strategy in ("spread", "pack"):
        pool = api_client_actors(cfg, 2, placement=strategy)  # type: ignore[arg-type]

        async def main(pool: BackendPool = pool) -> list[GenerationResult]:
            try:
                return await pool.generate(batches(1, 2)[0])
            finally:
                await pool.close()

        assert all(r.ok for r in asyncio.run(main()))
        assert pool.placement is not None
        table = placement_group_table(pool.placement.group)
        assert table["strategy"] == strategy.upper()
        assert [b for b in table["bundles"].values()] == [{"CPU": 0.1}] * 2
        assert table["state"] == "REMOVED"  # closed with its pool


def test_pool_of_actors_reports_fatal_replica_when_none_can_start(ray_local: Any) -> None:
    cfg = APIClientConfig(base_url="http://127.0.0.1:9/v1", api_key_env="PLURALIGN_UNSET_KEY")
    pool: BackendPool = api_client_actors(cfg, 1)

    async def main() -> list[GenerationResult]:
        try:
            return await pool.generate(batches(1, 2)[0])
        finally:
            await pool.close()

    results = asyncio.run(main())
    assert [r.id for r in results] == ["b0-0", "b0-1"]
    assert all(r.failure is not None and r.failure.kind.value == "fatal_replica"
               for r in results)
