"""The Ray runtime around a job, in this process: after the runtime it started is gone, no Ray
call starts another on its own, and a process that started none has nothing to take down."""

from __future__ import annotations

import pytest

from pluralign.jobs.ray_runtime import abandon_broken_ray, forbid_implicit_init


def test_no_ray_call_starts_a_runtime_once_implicit_init_is_forbidden(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")
    from ray._private import auto_init_hook

    if ray.is_initialized():
        pytest.skip("a Ray runtime is connected in this process")
    monkeypatch.setattr(auto_init_hook, "enable_auto_connect", True)  # restored afterwards
    forbid_implicit_init()
    with pytest.raises(Exception):  # noqa: B017 - Ray's own "not started" error, any kind
        ray.put(1)  # ray.init() on its own, before: a fresh local runtime
    assert not ray.is_initialized()


def test_a_process_that_started_no_runtime_abandons_none() -> None:
    pytest.importorskip("ray")
    assert abandon_broken_ray(settle=5.0) is False  # and returns at once: nothing to watch
