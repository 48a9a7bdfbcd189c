"""The batch input we write is processed by vLLM's own ``run-batch`` (the OpenAI batch file
format, a real engine: the tiny model, dummy weights) and its output file is read back by our
batch reader into the cache: every item scored, and a rerun has nothing left to send. The plan's
prompt tokens (the model folder's own tokenizer and chat template) are checked against the
engine's count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pluralign.actors.backends.api_client import APIClientConfig
from pluralign.actors.backends.batch_openai import OpenAIBatchClient, request_line, results_of
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.run.scheduler import plan
from pluralign.engine.store.cache import ScoreCache
from pluralign.jobs.batch_lane import store_results
from pluralign.jobs.configs import LLMConfig
from pluralign.jobs.llm_scoring import build_judge
from pluralign.jobs.plan import plan_items
from tests.real_engine.conftest import ENGINE
from tests.real_engine.vllm_server import STRUCTURED


def test_vllm_run_batch_round_trip(tiny_model: Path, tmp_path: Path) -> None:
    bench = synthetic_benchmark(n_scenarios=3, responses=(2, 2), n_attributes=2, n_levels=5,
                                seed=4, attributes=("helpfulness", "verbosity"), name="rb")
    config = LLMConfig(model=str(tiny_model), structured_output="vllm", max_tokens=1200,
                       few_shot=False, api_key_env=None)
    judge = build_judge(bench, None, "comparative-regression", config)
    items = judge.items(range(bench.n_scenarios), 1)
    cache = ScoreCache(tmp_path / "cache")
    planned = plan_items(judge, items, config, cache, benchmark=bench.identity, samples=1)
    assert planned.prompt_method.startswith("exact")

    client = OpenAIBatchClient(APIClientConfig(model=str(tiny_model), api_key_env=None,
                                               structured_output="vllm"))
    requests = {it.key: judge.request(it) for it in items}
    (tmp_path / "in.jsonl").write_bytes(b"".join(
        request_line(client.body(req), key) for key, req in requests.items()))
    engine = [f"--{k.replace('_', '-')}={v}" for k, v in ENGINE.items()]
    done = subprocess.run([sys.executable, "-m", "vllm.entrypoints.launchers.run_batch",
                           "-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"),
                           "--model", str(tiny_model), *engine,
                           "--structured-outputs-config", STRUCTURED],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    results = results_of((tmp_path / "out.jsonl").read_bytes(), requests)
    assert set(results) == set(requests)  # one output line per request, by custom_id
    stored = store_results(judge, items, results, cache)
    assert stored.completed == len(items), stored.failure_examples  # every item scored
    assert not stored.leftover and not stored.failed
    # A rerun would send nothing: every item is in the cache.
    assert not plan(items, cache.completed_keys(bench.identity, judge.identity)).pending
    engine_prompt = sum(r.usage.prompt_tokens for r in results.values())
    assert planned.prompt_tokens == engine_prompt
