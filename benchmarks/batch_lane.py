"""A batch-lane sweep against the fake Batch API, killed with SIGKILL while its batches are in
progress and run again; the same sweep online; and ``pluralign plan`` beside the actuals.

Prints: batches created and items per batch (the provider's request limit forces a split),
whether the rerun reattached, items processed (billed) more than once (must be 0), whether the
scores equal the online lane's on the same fake answers, and the plan's error on items, prompt
tokens and cost (the fake counts 1.3 tokens per word; the plan, with no tokenizer for a fake
model, estimates 4 characters per token). Last line: JSON.

    python benchmarks/batch_lane.py --scenarios 60 --max-requests 100
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pluralign.actors.testing.batch_server import FakeBatchServer
from pluralign.engine.store.cache import ScoreCache, summarize
from pluralign.jobs.plan import prices_for

KEY_ENV = "PLURALIGN_BENCH_KEY"


def cmd(command: str, url: str, root: Path, bench: str, cache: str, *extra: str) -> list[str]:
    out = [sys.executable, "-m", "pluralign", command, "--benchmark", bench,
           "--scorer", "regression", "--zero-shot", "--targets", "all", "--backend", "openai",
           "--base-url", url, "--model", "gpt-4o-mini", "--api-key-env", KEY_ENV,
           "--cache", str(root / cache), "--no-ray", "--max-tokens", "200", *extra]
    return out + (["--out", str(root / f"out-{cache}")] if command == "sweep" else [])


def scores(root: Path) -> dict[str, float]:
    """key -> score of every successful row in the cache at ``root``."""
    cache = ScoreCache(root)
    out: dict[str, float] = {}
    for bench, scorer in {(s.benchmark, s.scorer) for s in summarize(root)}:
        t = cache.read(bench, scorer)
        out.update(zip(t["key"].to_pylist(), t["score"].to_pylist(), strict=True))
    return out


def summary_counts(out: Path) -> dict[str, Any]:
    data = json.loads((out / "summary.json").read_text())
    manifest = data.get("manifest") or {}
    return dict(manifest.get("counts") or data.get("scoring") or {})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", type=int, default=60)
    p.add_argument("--max-requests", type=int, default=100,
                   help="the fake provider's requests per batch (forces a split)")
    args = p.parse_args()
    bench = f"synthetic:S={args.scenarios},A=2,L=3"
    env = {**os.environ, KEY_ENV: "sk-bench-not-a-real-key", "PLURALIGN_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    root = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    with FakeBatchServer(max_requests=args.max_requests, in_progress_s=20.0) as server:
        planned = json.loads(subprocess.run(
            cmd("plan", server.url, root, bench, "batch", "--json"), env=env,
            capture_output=True, text=True, check=True).stdout)
        first = subprocess.Popen(cmd("sweep", server.url, root, bench, "batch", "--lane", "batch",
                                     "--batch-poll-seconds", "0.1"),
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not any(b.status == "in_progress" for b in list(server.batches.values())):
            time.sleep(0.02)
        time.sleep(0.5)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        created_before_kill = server.created
        server.config.in_progress_s = 1.0
        rerun = subprocess.run(cmd("sweep", server.url, root, bench, "batch", "--lane", "batch",
                                   "--batch-poll-seconds", "0.1"),
                               env=env, capture_output=True, text=True)
        reattached = rerun.stderr.count("reattaching")
        # Online: half the scenarios first, then a plan (calibrated on those answers) and the rest.
        half = subprocess.run(cmd("sweep", server.url, root, bench, "online", "--limit",
                                  str(args.scenarios // 2)), env=env, capture_output=True,
                              text=True)
        out_half = root / "out-online"
        first_half = summary_counts(out_half) if half.returncode == 0 else {}
        calibrated = json.loads(subprocess.run(
            cmd("plan", server.url, root, bench, "online", "--json"), env=env,
            capture_output=True, text=True, check=True).stdout)
        online = subprocess.run(cmd("sweep", server.url, root, bench, "online"), env=env,
                                capture_output=True, text=True)
        refused = [len(b.requests) for b in server.batches.values() if b.status == "failed"]
        per_batch = [len(b.requests) for b in server.batches.values() if b.status != "failed"]
        twice = sum(1 for n in server.processed.values() if n > 1)
        batch_scores, online_scores = scores(root / "batch"), scores(root / "online")
    rest = summary_counts(root / "out-online")
    prices = prices_for("gpt-4o-mini")
    assert prices is not None

    def actual(*counts: dict[str, Any]) -> dict[str, Any]:
        pt = sum(int(c.get("prompt_tokens", 0)) for c in counts)
        ct = sum(int(c.get("completion_tokens", 0)) for c in counts)
        return {"items": sum(int(c.get("completed", 0)) for c in counts), "prompt_tokens": pt,
                "completion_tokens": ct, "cost_online": round(prices.cost(pt, ct, "online"), 6)}

    def error(plan: dict[str, Any], act: dict[str, Any]) -> dict[str, Any]:
        pairs = {"items": (plan["to_send"], act["items"]),
                 "prompt_tokens": (plan["prompt_tokens"], act["prompt_tokens"]),
                 "completion_tokens": (plan["completion_tokens"], act["completion_tokens"]),
                 "cost_online": (plan["costs"]["online"], act["cost_online"])}
        return {k: round((a - b) / b, 4) if b else None for k, (a, b) in pairs.items()}

    whole, second = actual(first_half, rest), actual(rest)
    result = {
        "items": planned["items"], "batches_created": server.created,
        "batches_refused_too_large": refused, "items_per_batch": per_batch,
        "created_before_kill": created_before_kill,
        "rerun_rc": rerun.returncode, "reattached_batches": reattached,
        "items_processed_twice": twice,
        "scores_equal_online": bool(batch_scores) and batch_scores == online_scores,
        "online_rc": online.returncode,
        "plan_before_any_answer": {k: planned[k] for k in ("to_send", "prompt_tokens",
                                                          "completion_tokens", "costs",
                                                          "prompt_method", "completion_method")},
        "actual_whole": whole, "error_before_any_answer": error(planned, whole),
        "plan_calibrated": {k: calibrated[k] for k in ("to_send", "prompt_tokens",
                                                       "completion_tokens", "costs",
                                                       "prompt_method", "completion_method")},
        "actual_rest": second, "error_calibrated": error(calibrated, second),
    }
    print(f"batches created {server.created} ({len(refused)} refused as too large, then "
          f"split: items per batch {per_batch}); killed in progress, rerun rc {rerun.returncode},"
          f" reattached {reattached}; items billed twice {twice}; scores equal online: "
          f"{result['scores_equal_online']}")
    print(f"plan before any answer vs actual: {result['error_before_any_answer']}")
    print(f"plan calibrated on half vs actual rest: {result['error_calibrated']}")
    print(json.dumps(result))
    return 0 if twice == 0 and result["scores_equal_online"] else 1


if __name__ == "__main__":
    sys.exit(main())
