"""docs/cluster.md's multi-host recipe is what the rig runs: every command the rig builds (with
the docs' ``$HEAD_IP``-style placeholders) appears in the docs, with token auth. Needs no rig."""

from __future__ import annotations

import re

from tests.cluster.rig import (
    REPO,
    head_start,
    job_submit,
    redis_start,
    shell_line,
    sweep_command,
    worker_start,
)

HEAD, WORKER, TMP = "$HEAD_IP", "$WORKER_IP", "$RAY_TMP"


def documented_commands() -> list[str]:
    """Every line of the docs' shell blocks, continuation lines joined, spaces collapsed."""
    text = (REPO / "docs" / "cluster.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S)
    return [" ".join(line.split()) for b in blocks for line in b.replace("\\\n", " ").splitlines()
            if line.strip()]


def rig_commands() -> dict[str, str]:
    sweep = sweep_command(HEAD, "$PROVIDER_URL", "$SHARED/cache", "$SHARED/sweep1")
    return {
        "head": shell_line(head_start(HEAD, TMP)),
        "redis": shell_line(redis_start(HEAD)),
        "worker": shell_line(worker_start(HEAD, WORKER, TMP)),
        "submit": shell_line(job_submit(HEAD, "sweep1", sweep)),
    }


def test_every_command_the_rig_runs_is_in_the_docs_with_token_auth() -> None:
    documented = documented_commands()
    for step, command in rig_commands().items():
        found = [line for line in documented if line.endswith(command)]
        assert found, f"docs/cluster.md lacks the rig's {step} command:\n{command}"
        if command.startswith("ray "):
            assert found[0] == f"RAY_AUTH_MODE=token {command}", found[0]


def test_the_docs_share_one_token_file_between_hosts() -> None:
    assert any(line.startswith("export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=")
               for line in documented_commands())


def test_a_changed_rig_command_would_be_caught() -> None:
    # The check above compares whole commands: one flag more is a mismatch.
    changed = shell_line([*head_start(HEAD, TMP), "--block"])
    assert not any(line.endswith(changed) for line in documented_commands())
