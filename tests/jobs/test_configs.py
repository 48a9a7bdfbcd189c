"""The numeric settings of the configs: each field's Range is checked by the config when built
(the Python API, argument names in backticks) and by its generated flag while parsing, so both
refuse the same values."""

from __future__ import annotations

import argparse
import math

import pytest

from pluralign.engine.errors import InputError, cli_text
from pluralign.jobs.align import AlignConfig
from pluralign.jobs.cli.args import add_llm_args
from pluralign.jobs.configs import (
    LLMConfig,
    Range,
    RewardConfig,
    SplitConfig,
    numeric_fields,
    numeric_problem,
)
from pluralign.jobs.sweep import SweepConfig

CONFIGS = [LLMConfig, RewardConfig, SplitConfig, SweepConfig, AlignConfig]


def required(cls: type) -> dict[str, object]:
    return {"model": "m"} if cls in (LLMConfig, RewardConfig) else \
        {"out": "run"} if cls is SweepConfig else {}


def below(kind: type, limits: Range) -> int | float:
    """A value just outside ``limits`` (below, or above when there is no bound below)."""
    if limits.low is not None:
        return limits.low if limits.above else (limits.low - 1 if kind is int else
                                                 limits.low - 0.5)
    assert limits.high is not None, "every setting here is bounded on one side at least"
    return limits.high + 1


FIELDS = [(cls, name, kind, limits) for cls in CONFIGS
          for name, (kind, limits) in numeric_fields(cls).items()]


@pytest.mark.parametrize(("cls", "name", "kind", "limits"), FIELDS,
                         ids=[f"{c.__name__}.{n}" for c, n, _, _ in FIELDS])
def test_every_numeric_field_refuses_out_of_range_nan_and_inf(
        cls: type, name: str, kind: type, limits: Range) -> None:
    bad: list[object] = [below(kind, limits)] if limits.low is not None or limits.high \
        is not None else []
    bad += [math.nan, math.inf, True, "1"] if kind is float else [1.5, True, "1"]
    for value in bad:
        with pytest.raises(InputError) as info:
            cls(**required(cls), **{name: value})
        assert f"`{name}`" in str(info.value) and info.value.field == name, value


def test_defaults_are_in_range() -> None:
    for cls in CONFIGS:
        cls(**required(cls))  # no InputError


def test_the_flag_refuses_what_the_config_refuses() -> None:
    p = argparse.ArgumentParser()
    add_llm_args(p)
    for name, (kind, limits) in numeric_fields(LLMConfig).items():
        flag = "--" + name.replace("_", "-")
        for text in ("nan", "inf", str(below(kind, limits))):
            with pytest.raises(SystemExit):
                p.parse_args([flag, text])
        assert numeric_problem(math.nan, kind, limits) is not None


def test_api_message_names_the_argument_and_the_cli_the_flag() -> None:
    with pytest.raises(InputError) as info:
        LLMConfig(model="m", request_timeout=0)
    assert "`request_timeout` must be above 0" in str(info.value)
    assert "--request-timeout must be above 0" in cli_text(str(info.value))


def test_max_retries_counts_retries_after_the_first_send() -> None:
    assert LLMConfig(model="m", max_retries=0).max_sends == 1
    assert LLMConfig(model="m").max_sends == 6


def test_range_texts() -> None:
    assert Range(1, 10).text() == "between 1 and 10"
    assert Range(0, above=True).text() == "above 0"
    assert Range(0.0, 86_400.0, above=True).text() == "above 0 and at most 86,400"
    assert Range(1).problem(0) == "must be at least 1" and Range(1).problem(1) is None
