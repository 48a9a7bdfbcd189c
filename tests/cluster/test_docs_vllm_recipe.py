"""docs/cluster.md's vLLM replica recipe is what tests/real_engine/test_cluster_replica.py runs on
the rig: the worker that advertises ``vllm_replica`` and the sweep's submission, with token
auth. Needs no rig and no vLLM."""

from __future__ import annotations

from tests.cluster.rig import job_submit, shell_line, vllm_sweep_command, worker_start
from tests.cluster.test_docs_recipe import HEAD, TMP, WORKER, documented_commands
from tests.real_engine.conftest import ENGINE


def test_the_vllm_worker_and_sweep_are_in_the_docs_with_token_auth() -> None:
    documented = documented_commands()
    sweep = vllm_sweep_command("$SHARED/tiny-model", "$SHARED/cache", "$SHARED/vllm1", ENGINE)
    for step, args in {"vllm worker": worker_start(HEAD, WORKER, TMP, {"vllm_replica": 1}),
                       "vllm submit": job_submit(HEAD, "vllm1", sweep)}.items():
        command = shell_line(args)
        assert f"RAY_AUTH_MODE=token {command}" in documented, \
            f"docs/cluster.md lacks the rig's {step} command:\n{command}"


def test_the_vllm_worker_advertises_no_api_client() -> None:
    # Its own resources replace the API-client ones: API-client actors never crowd the GPU host.
    line = shell_line(worker_start(HEAD, WORKER, TMP, {"vllm_replica": 1}))
    assert "'{\"vllm_replica\": 1}'" in line and "api_client" not in line
    assert "api_client" in shell_line(worker_start(HEAD, WORKER, TMP))
