"""Bad input is refused before any work, in one line naming file, record and field (through
the real command line). Each case prints its error line; the cache stays untouched.

:data:`CASES` is the table of flag and file cases (every numeric flag's NaN, infinities, zero
and absurd sizes; benchmark, group, target and SPICA files with empty texts, repeated keys,
too many responses, non-UTF-8 bytes): each must exit 2 with one error line and no traceback,
with nothing sent to the endpoint and nothing written."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pluralign.actors.testing.fake_server import FakeOpenAIServer
from pluralign.jobs.cli import main

BENCH = "synthetic:S=12,A=3,L=5,seed=1"
ATTRS = ("a0", "a1", "a2")
DEEP = "[" * 100_000 + "]" * 100_000


def run_main(argv: list[str]) -> int:
    """``main(argv)``'s exit status, also when argparse refuses a flag (SystemExit)."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def error_lines(err: str) -> list[str]:
    """The error lines of stderr: ``error: ...``, or argparse's ``pluralign X: error: ...``
    (after its usage lines)."""
    return [line for line in err.splitlines()
            if line.startswith("error:") or (line.startswith("pluralign") and ": error: " in line)]


def refused(capsys: Any, argv: list[str], *needles: str, rc: int = 2) -> str:
    """Run ``argv``; assert exit ``rc`` and one error line holding every needle."""
    assert run_main(argv) == rc
    err = capsys.readouterr().err
    lines = error_lines(err)
    with capsys.disabled():
        print(f"\n  {' '.join(a if len(a) < 60 else a[:57] + '...' for a in argv[:6])} ...\n"
              f"    -> {lines[-1] if lines else err!r}")
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def sweep(tmp: Path, *extra: str, out: str | None = None) -> list[str]:
    return ["sweep", "--benchmark", BENCH, "--scorer", "ridge", "--cache", str(tmp / "cache"),
            "--out", str(tmp / "run") if out is None else out, *extra]


def untouched(tmp: Path) -> None:
    """Before any work: nothing was scored into the cache."""
    assert not (tmp / "cache").exists() or not any((tmp / "cache").iterdir())


# ---------------------------------------------------------------- output paths


def test_out_is_an_existing_file(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "taken"
    f.write_text("x")
    refused(capsys, sweep(tmp_path, out=str(f)), str(f), "'--out'", "exists and is a file")
    untouched(tmp_path)


def test_out_is_empty(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, sweep(tmp_path, out=""), "'--out'", "empty path")
    untouched(tmp_path)


def test_out_under_a_file(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "f").write_text("x")
    refused(capsys, sweep(tmp_path, out=str(tmp_path / "f" / "run")), "cannot be created")
    untouched(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_out_not_writable(tmp_path: Path, capsys: Any) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    refused(capsys, sweep(tmp_path, out=str(ro / "run")), "not writable")
    untouched(tmp_path)


def test_align_out_is_a_folder(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, ["align", "--benchmark", BENCH, "--target", '{"a0": 1}', "--cache",
                     str(tmp_path / "cache"), "--out", str(tmp_path)],
            "exists and is a folder")
    untouched(tmp_path)


def test_align_out_is_empty(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, ["align", "--benchmark", BENCH, "--target", '{"a0": 1}', "--cache",
                     str(tmp_path / "cache"), "--out", ""], "empty path")


def jury(tmp: Path, groups: Path | str, out: str | None = None) -> list[str]:
    return ["jury", "--benchmark", BENCH, "--scorer", "ridge", "--cache", str(tmp / "cache"),
            "--groups", str(groups), "--out", str(tmp / "jury") if out is None else out]


def groups_file(tmp: Path, data: Any, name: str = "groups.json") -> Path:
    p = tmp / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


GOOD = {"groups": [{"name": "g", "jurors": [{"target": {"a0": 1}}]}]}


def test_jury_out_is_an_existing_file(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "taken"
    f.write_text("x")
    refused(capsys, jury(tmp_path, groups_file(tmp_path, GOOD), out=str(f)),
            "exists and is a file")
    untouched(tmp_path)


def test_distribution_out_is_empty(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, ["distribution", "--file", str(tmp_path / "d.json"), "--out", ""],
            "empty path")


# ---------------------------------------------------------------- group files, before scoring


def test_jury_groups_missing_is_refused_before_scoring(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, jury(tmp_path, tmp_path / "nope.json"), "nope.json", "file not found")
    untouched(tmp_path)


def test_jury_groups_unknown_attribute_is_refused_before_scoring(
        tmp_path: Path, capsys: Any) -> None:
    bad = {"groups": [{"name": "g", "jurors": [{"target": {"nope": 1}}]}]}
    refused(capsys, jury(tmp_path, groups_file(tmp_path, bad)), "groups.json", "groups[0]",
            "nope")
    untouched(tmp_path)


def test_jury_groups_repeated_key(tmp_path: Path, capsys: Any) -> None:
    text = '{"groups": [{"name": "g", "jurors": [{"target": {"a0": 1, "a0": 0}}]}]}'
    refused(capsys, jury(tmp_path, groups_file(tmp_path, text)), "groups.json", "'a0'",
            "appears twice")
    untouched(tmp_path)


def test_jury_groups_nested_too_deeply(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, jury(tmp_path, groups_file(tmp_path, DEEP)), "groups.json",
            "nested too deeply")
    untouched(tmp_path)


def test_jury_sample_beyond_memory(tmp_path: Path, capsys: Any) -> None:
    bad = {"groups": [{"name": "many", "distribution": [{"target": {"a0": 1}, "weight": 1}],
                       "sample": 10**9}]}
    refused(capsys, jury(tmp_path, groups_file(tmp_path, bad)), "groups[0]", "'sample'",
            "would need about 111.8 GiB of memory")
    untouched(tmp_path)


def test_jury_preferences_sample_beyond_memory(tmp_path: Path, capsys: Any) -> None:
    bad = {"groups": [{"name": "many", "preferences": {"a0": "uniform"}, "sample": 10**9}]}
    refused(capsys, jury(tmp_path, groups_file(tmp_path, bad)), "'sample'", "would need")
    untouched(tmp_path)


# ---------------------------------------------------------------- targets


def test_inline_target_with_a_repeated_key(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, sweep(tmp_path, "--targets", '{"a0": 1, "a0": 0}'), "inline target",
            "'a0'", "appears twice")
    untouched(tmp_path)


def test_inline_key_value_target_with_a_repeated_key(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, sweep(tmp_path, "--targets", "a0=1,a0=0"), "'a0'", "appears twice")
    untouched(tmp_path)


def test_empty_inline_target_list(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, sweep(tmp_path, "--targets", "[]"), "names no target")
    untouched(tmp_path)


def test_target_file_with_an_empty_list(tmp_path: Path, capsys: Any) -> None:
    f = groups_file(tmp_path, [], "targets.json")
    refused(capsys, sweep(tmp_path, "--targets", str(f)), "targets.json", "empty target list")
    untouched(tmp_path)


def test_target_file_with_a_repeated_key(tmp_path: Path, capsys: Any) -> None:
    f = groups_file(tmp_path, '[{"a1": 0.5, "a1": 1}]', "targets.json")
    refused(capsys, sweep(tmp_path, "--targets", str(f)), "targets.json", "'a1'",
            "appears twice")
    untouched(tmp_path)


def test_target_file_nested_too_deeply(tmp_path: Path, capsys: Any) -> None:
    f = groups_file(tmp_path, DEEP, "targets.json")
    refused(capsys, sweep(tmp_path, "--targets", str(f)), "targets.json", "nested too deeply")
    untouched(tmp_path)


# ---------------------------------------------------------------- benchmarks


def hs2_dir(tmp: Path, label: float) -> Path:
    d = tmp / "data"
    (d / "helpsteer2").mkdir(parents=True)
    labels = [{"helpfulness": 0.25, "correctness": 0.5, "coherence": 1, "complexity": 0,
               "verbosity": 0.75}, {"helpfulness": label, "correctness": 0.5, "coherence": 1,
                                    "complexity": 0, "verbosity": 0.75}]
    rec = [{"prompt": f"p{i}", "responses": ["a", "b"], "labels": labels} for i in range(4)]
    for split in ("eval", "train"):
        (d / "helpsteer2" / f"{split}.json").write_text(json.dumps(rec))
    return d


def test_helpsteer2_label_off_the_level_grid(tmp_path: Path, capsys: Any) -> None:
    d = hs2_dir(tmp_path, 0.3)
    refused(capsys, ["sweep", "--benchmark", "helpsteer2", "--data", str(d), "--scorer",
                     "constant", "--cache", str(tmp_path / "cache"), "--out",
                     str(tmp_path / "run")],
            "eval.json", "record 0 (response 1)", "'labels.helpfulness'", "label 0.3 is off")
    untouched(tmp_path)


def test_benchmark_file_nested_too_deeply(tmp_path: Path, capsys: Any) -> None:
    f = groups_file(tmp_path, DEEP, "bench.json")
    refused(capsys, ["sweep", "--benchmark", str(f), "--scorer", "constant", "--cache",
                     str(tmp_path / "cache"), "--out", str(tmp_path / "run")],
            "bench.json", "nested too deeply")
    untouched(tmp_path)


def with_bench(argv: list[str], bench: str) -> list[str]:
    return [bench if a == BENCH else a for a in argv]


def test_synthetic_benchmark_beyond_memory(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, with_bench(sweep(tmp_path), "synthetic:S=100000000"),
            "synthetic:S=100000000", "'S'", "would need about 154.6 GiB of memory")
    untouched(tmp_path)


def test_synthetic_benchmark_with_huge_shape(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, with_bench(sweep(tmp_path), "synthetic:S=1000000,A=5000,R=2-26"), "'S'",
            "would need")
    untouched(tmp_path)


# ---------------------------------------------------------------- the table of flag and file cases


@dataclass(frozen=True)
class Case:
    """One bad input: the command line (given the test's folder and the endpoint's URL) and
    what its one error line must name."""

    name: str
    argv: Callable[[Path, str], list[str]]
    needles: tuple[str, ...]


def llm(*extra: str) -> Callable[[Path, str], list[str]]:
    """A sweep of an LLM judge against the test endpoint, with ``extra`` flags."""
    return lambda tmp, url: sweep(tmp, "--scorer", "comparative-regression", "--model", "m",
                                  "--base-url", url, "--api-key-env", "none", "--no-ray",
                                  "--zero-shot", *extra)


def plain(*extra: str) -> Callable[[Path, str], list[str]]:
    """A sweep of a model-free scorer, with ``extra`` flags."""
    return lambda tmp, url: sweep(tmp, *extra)


def align(*extra: str) -> Callable[[Path, str], list[str]]:
    return lambda tmp, url: ["align", "--benchmark", BENCH, "--target", "a0=1", "--cache",
                             str(tmp / "cache"), *extra]


def command(*argv: str) -> Callable[[Path, str], list[str]]:
    """Any command; ``{tmp}`` in an argument is the test's folder."""
    return lambda tmp, url: [a.replace("{tmp}", str(tmp)) for a in argv]


def record(**fields: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"prompt": "p", "responses": ["a", "b"],
                           "labels": [{"x": 0.0}, {"x": 1.0}]}
    rec.update(fields)
    return rec


def bench_file(content: Any, name: str = "bench.json") -> Callable[[Path, str], list[str]]:
    """A sweep of the benchmark file holding ``content`` (records, JSON text or bytes)."""
    def argv(tmp: Path, url: str) -> list[str]:
        path = tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        bench = f"helpsteer2-raw:{path}" if name.endswith(".jsonl") else str(path)
        return ["sweep", "--benchmark", bench, "--scorer", "constant", "--cache",
                str(tmp / "cache"), "--out", str(tmp / "run")]
    return argv


def groups(content: Any) -> Callable[[Path, str], list[str]]:
    def argv(tmp: Path, url: str) -> list[str]:
        path = tmp / "groups.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(json.dumps(content))
        return jury(tmp, path)
    return argv


def targets_file(content: bytes) -> Callable[[Path, str], list[str]]:
    def argv(tmp: Path, url: str) -> list[str]:
        (tmp / "targets.json").write_bytes(content)
        return sweep(tmp, "--targets", str(tmp / "targets.json"))
    return argv


def spica_files(annotations: bytes) -> Callable[[Path, str], list[str]]:
    def argv(tmp: Path, url: str) -> list[str]:
        (tmp / "annotations.json").write_bytes(annotations)
        (tmp / "scenarios.json").write_text(json.dumps(
            [{"id": "s1", "body": "a question", "responses": {"refusal": ["no"]}}]))
        return ["spica", "evaluate", "--spica-annotations", str(tmp / "annotations.json"),
                "--spica-scenarios", str(tmp / "scenarios.json")]
    return argv


def group(**fields: Any) -> dict[str, Any]:
    return {"groups": [{"name": "g", "jurors": [{"target": {"a0": 1}}], **fields}]}


LATIN1 = "[{\"prompt\": \"caf\xe9\", \"responses\": [\"a\", \"b\"]}]".encode("latin-1")

CASES = [
    # numeric flags of an LLM sweep: NaN, infinities, zero, negative, absurd sizes
    Case("memory-budget 1e9999", llm("--memory-budget", "1e9999"), ("--memory-budget",)),
    Case("memory-budget nan", llm("--memory-budget", "nan"), ("--memory-budget",)),
    Case("rpm -1", llm("--rpm", "-1"), ("--rpm", "above 0")),
    Case("rpm 0", llm("--rpm", "0"), ("--rpm", "above 0")),
    Case("rpm nan", llm("--rpm", "nan"), ("--rpm", "finite")),
    Case("tpm 0", llm("--tpm", "0"), ("--tpm",)),
    Case("tpm inf", llm("--tpm", "inf"), ("--tpm", "finite")),
    Case("concurrency 0", llm("--concurrency", "0"), ("--concurrency",)),
    Case("concurrency 1e9", llm("--concurrency", "1e9"), ("--concurrency",)),
    Case("request-timeout 0", llm("--request-timeout", "0"), ("--request-timeout",)),
    Case("request-timeout nan", llm("--request-timeout", "nan"), ("--request-timeout",)),
    Case("temperature nan", llm("--temperature", "nan"), ("--temperature", "finite")),
    Case("temperature -0.5", llm("--temperature", "-0.5"), ("--temperature",)),
    Case("cost-budget nan", llm("--cost-budget", "nan"), ("--cost-budget", "finite")),
    Case("cost-budget 0", llm("--cost-budget", "0"), ("--cost-budget",)),
    Case("max-tokens 1e9", llm("--max-tokens", "1000000000"), ("--max-tokens",)),
    Case("max-tokens 0", llm("--max-tokens", "0"), ("--max-tokens",)),
    Case("max-retries -1", llm("--max-retries", "-1"), ("--max-retries",)),
    Case("max-retries 1000", llm("--max-retries", "1000"), ("--max-retries",)),
    Case("grace-seconds -1", llm("--grace-seconds", "-1"), ("--grace-seconds",)),
    Case("max-in-flight 0", llm("--max-in-flight", "0"), ("--max-in-flight",)),
    Case("sampling-seed -1", llm("--sampling-seed", "-1"), ("--sampling-seed",)),
    Case("token-budget -5", llm("--token-budget", "-5"), ("--token-budget",)),
    Case("samples 0", llm("--samples", "0"), ("--samples",)),
    Case("samples 1000000", llm("--samples", "1000000"), ("--samples", "would need")),
    Case("actors 0", llm("--actors", "0"), ("--actors",)),
    Case("shots 0", llm("--shots", "0"), ("--shots",)),
    Case("price-prompt -1", llm("--price-prompt", "-1"), ("--price-prompt",)),
    Case("batch-poll-seconds 0", llm("--batch-poll-seconds", "0"), ("--batch-poll-seconds",)),
    Case("tensor-parallel 0", llm("--tensor-parallel", "0"), ("--tensor-parallel",)),
    # numeric flags of model-free sweeps and of other commands
    Case("limit 0", plain("--limit", "0"), ("--limit",)),
    Case("seed -1", plain("--scorer", "random", "--seed", "-1"), ("--seed",)),
    Case("value nan", plain("--scorer", "constant", "--value", "nan"), ("--value",)),
    Case("shards 0", plain("--shards", "0"), ("--shards",)),
    Case("reward-batch 0", plain("--scorer", "reward", "--model", "m", "--reward-batch", "0"),
         ("--reward-batch",)),
    Case("align samples 0", align("--samples", "0"), ("--samples",)),
    Case("align samples 1e9", align("--samples", "1000000000"), ("--samples", "would need")),
    Case("align memory-budget inf", align("--memory-budget", "inf"), ("--memory-budget",)),
    Case("jury tau nan", lambda tmp, url: [*jury(tmp, groups_file(tmp, GOOD)), "--tau", "nan"],
         ("--tau",)),
    Case("jury bootstrap -1", lambda tmp, url: [*jury(tmp, groups_file(tmp, GOOD)),
                                                "--bootstrap", "-1"], ("--bootstrap",)),
    Case("jury bootstrap 1e12", lambda tmp, url: [*jury(tmp, groups_file(tmp, GOOD)),
                                                  "--bootstrap", "1000000000000"],
         ("--bootstrap",)),
    Case("serve port 70000", command("serve", "--port", "70000"), ("--port", "65,535")),
    Case("distribution shuffles -1", command("distribution", "--file", "{tmp}/d.json", "--out",
                                             "{tmp}/out", "--shuffles", "-1"), ("--shuffles",)),
    Case("serve port -1", command("serve", "--port", "-1"), ("--port",)),
    Case("align show -1", align("--show", "-1"), ("--show",)),
    Case("cache gc min-age nan", command("cache", "gc", "--cache", "{tmp}/cache", "--min-age",
                                         "nan"), ("--min-age",)),
    Case("opinions logprobs 0", command("opinions", "--file", "{tmp}/o.json", "--out",
                                        "{tmp}/out", "--logprobs", "0"), ("--logprobs",)),
    Case("overton threshold nan", command("overton", "--file", "{tmp}/o.json", "--out",
                                          "{tmp}/out", "--threshold", "nan"), ("--threshold",)),
    # benchmark files
    Case("empty prompt", bench_file([record(), record(prompt="  ")]),
         ("bench.json", "record 1", "'prompt'", "empty prompt")),
    Case("empty response", bench_file([record(responses=["a", ""])]),
         ("bench.json", "record 0", "'responses[1]'", "empty response")),
    Case("27 responses", bench_file([record(responses=[f"r{i}" for i in range(27)],
                                            labels=[{"x": i % 2} for i in range(27)])]),
         ("bench.json", "record 0", "'responses'", "at most 26")),
    Case("100,000 responses", bench_file([record(), record(
        responses=[f"r{i}" for i in range(100_000)],
        labels=[{"x": i % 2} for i in range(100_000)])]),
         ("bench.json", "record 1", "'responses'", "100,000 responses")),
    Case("repeated label key", bench_file(
        '[{"prompt": "p", "responses": ["a", "b"], "labels": [{"x": 0}, {"x": 1}]},'
        ' {"prompt": "q", "responses": ["a", "b"], "labels": [{"x": 0}, {"x": 1, "x": 0}]}]'),
         ("bench.json", "record 1", "'labels[1].x'", "appears twice")),
    Case("repeated record key", bench_file(
        '[{"prompt": "p", "prompt": "q", "responses": ["a", "b"],'
        ' "labels": [{"x": 0}, {"x": 1}]}]'), ("bench.json", "record 0", "'prompt'", "twice")),
    Case("benchmark not UTF-8", bench_file(LATIN1), ("bench.json", "utf-8")),
    Case("raw rows not UTF-8", bench_file(b'{"prompt": "caf\xe9"}\n', "rows.jsonl"),
         ("rows.jsonl", "UTF-8")),
    Case("raw rows repeated key", bench_file('{"prompt": "a"}\n{"prompt": "b", "prompt": "c"}\n',
                                             "rows.jsonl"),
         ("rows.jsonl", "record 1", "'prompt'", "twice")),
    Case("synthetic R=2-27", plain("--benchmark", "synthetic:S=5,R=2-27"), ("'R'", "26")),
    # group, target and SPICA files
    Case("group size 1e308", groups(group(size=1e308)), ("groups.json", "'size'")),
    Case("group size 0", groups(group(size=0)), ("groups.json", "'size'")),
    Case("juror weight 1e300", groups({"groups": [{"name": "g", "distribution": [
        {"target": {"a0": 1}, "weight": 1e300}]}]}), ("groups.json", "weight")),
    Case("groups not UTF-8", groups(b'{"groups": "caf\xe9"}'), ("groups.json", "utf-8")),
    Case("targets not UTF-8", targets_file(b'[{"a0": "\xff"}]'), ("targets.json", "utf-8")),
    Case("SPICA annotations not UTF-8", spica_files(b'[{"id": "caf\xe9"}]'),
         ("annotations.json", "utf-8")),
]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[FakeOpenAIServer]:
    """An OpenAI-compatible endpoint that counts what reaches it (nothing may)."""
    server = FakeOpenAIServer().start_in_thread()
    yield server
    server.stop_thread()


def clean_refusal(case: Case, tmp: Path, url: str, capsys: Any) -> str | None:
    """None when ``case`` exits 2 saying one line (an error line naming its needles, no
    traceback, no usage block, no progress); else what went wrong."""
    rc = run_main(case.argv(tmp, url))
    err = capsys.readouterr().err
    lines = error_lines(err)
    with capsys.disabled():
        print(f"\n  {case.name}: rc {rc} -> {lines[-1] if lines else err[-200:]!r}")
    said = [line for line in err.splitlines() if line.strip()]
    if rc != 2 or len(lines) != 1 or said != lines or "Traceback" in err:
        return f"rc {rc}, {len(said)} lines, {len(lines)} error lines: {err[-400:]}"
    missing = [n for n in case.needles if n.lower() not in lines[0].lower()]
    return f"{lines[0]!r} does not name {missing}" if missing else None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clean_line_before_any_work(
        case: Case, tmp_path: Path, capsys: Any, endpoint: FakeOpenAIServer) -> None:
    before = endpoint.stats()["total"]
    problem = clean_refusal(case, tmp_path, endpoint.url, capsys)
    assert problem is None, problem
    assert endpoint.stats()["total"] == before  # nothing sent
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()  # nor written
    untouched(tmp_path)
