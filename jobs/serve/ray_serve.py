"""The query service as a Ray Serve deployment: replicas and autoscaling by Ray Serve.

Every replica holds its own :class:`~pluralign.jobs.serve.query.QueryService` (its LRU of
predictions and label indexes) over the shared cache folder and answers with the same handler
as the local server (:func:`pluralign.jobs.serve.http.respond`). Run it with ``pluralign serve
--ray``, or with Ray Serve's own tools through :func:`app_builder`::

    serve run pluralign.jobs.serve.ray_serve:app_builder cache=/shared/cache replicas=2

or a ``serve deploy`` config naming ``import_path: pluralign.jobs.serve.ray_serve:app_builder``
with the same ``args`` (see docs/serve.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ray
from ray import serve

from pluralign.engine.run.hosts import is_loopback
from pluralign.jobs.serve.http import load_token, respond
from pluralign.jobs.serve.query import Limits, QueryService

if TYPE_CHECKING:
    from ray.serve import Application
    from starlette.requests import Request
    from starlette.responses import JSONResponse


class AlignReplica:
    """One replica: a query service over the cache, behind the shared request handler."""

    def __init__(self, cache: str, data: str | None, lru: int, limits: Limits,
                 memory_budget: int | None, token: str | None) -> None:
        loopback_replica_grpc()
        self.service = QueryService(cache, data, lru=lru, limits=limits,
                                    memory_budget=memory_budget)
        self.token = token

    async def __call__(self, request: Request) -> JSONResponse:
        return await respond(self.service, self.token, request)


def loopback_replica_grpc() -> bool:
    """On a node whose Ray address is loopback (the local runtime ``serve --ray`` starts),
    make this replica's inter-deployment gRPC server listen on 127.0.0.1 instead of every
    interface (Ray Serve binds ``[::]`` whatever the node's address); a node of a real
    cluster keeps Ray's binding. Runs in the replica's constructor, before Ray Serve starts
    that server; True when the binding was changed."""
    from ray.serve._private import replica as serve_replica

    node_ip = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    add: Callable[[Any, str], int] | None = getattr(serve_replica, "add_port_to_grpc_server",
                                                    None)
    if add is None or not is_loopback(node_ip) or getattr(add, "loopback", False):
        return False

    def on_loopback(server: Any, address: str) -> int:
        return add(server, address.replace("[::]", "127.0.0.1", 1))

    on_loopback.loopback = True  # type: ignore[attr-defined]
    setattr(serve_replica, "add_port_to_grpc_server", on_loopback)  # noqa: B010
    return True


AlignDeployment = serve.deployment(name="pluralign-align", max_ongoing_requests=32,
                                   ray_actor_options={"num_cpus": 1})(AlignReplica)
"""The deployment of :class:`AlignReplica`."""


def build(cache: str, data: str | None = None, *, lru: int = 16, limits: Limits | None = None,
          memory_budget: int | None = None, token: str | None = None, replicas: int = 1,
          autoscale: tuple[int, int] | None = None) -> Application:
    """The Serve application: ``replicas`` fixed, or autoscaled between (min, max)."""
    lim = limits or Limits()
    deployment = AlignDeployment.options(num_replicas=replicas)
    if autoscale is not None:
        lo, hi = autoscale
        deployment = AlignDeployment.options(
            num_replicas="auto", autoscaling_config={
                "min_replicas": lo, "max_replicas": hi, "target_ongoing_requests": 4})
    return deployment.bind(
        cache, data, lru, lim, memory_budget, token)


def app_builder(args: dict[str, str]) -> Application:
    """Entry point for ``serve run``/``serve deploy``: args cache, data, replicas,
    min_replicas/max_replicas, lru, token_file (the token also from the environment)."""
    auto = None
    if "min_replicas" in args or "max_replicas" in args:
        auto = (int(args.get("min_replicas", 1)), int(args.get("max_replicas", 2)))
    return build(args["cache"], args.get("data"), lru=int(args.get("lru", 16)),
                 token=load_token(args.get("token_file")),
                 replicas=int(args.get("replicas", 1)), autoscale=auto)
