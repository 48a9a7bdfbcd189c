"""Target sets by name, as users ask for them: ``all``, ``sampled`` (the published sample, or
``random-sampled``, generated and named as such), ``high``, ``low``, target JSON files or
folders, and inline targets (``{"helpfulness": 1}`` or ``helpfulness=1,verbosity=0``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.sources import published_locations, published_targets
from pluralign.engine.data.targets import (
    GENERATED_SAMPLED,
    TargetSet,
    all_targets,
    concat,
    high_target,
    load_target_files,
    low_target,
    parse_inline,
    sampled_targets,
)
from pluralign.engine.errors import InputError
from pluralign.engine.run.progress import note

DEFAULT_SETS = ("all", "sampled", "high", "low")
"""The sets a sweep re-aligns when none are named."""
TARGET_SET_NAMES = (*DEFAULT_SETS, GENERATED_SAMPLED)
"""Every named target set; ``random-sampled`` is generated (never the published sampled set)."""


def is_inline(spec: str) -> bool:
    """Whether ``spec`` is an inline target rather than a set name or a path."""
    return spec.lstrip().startswith(("{", "[")) or ("=" in spec and not Path(spec).exists())


def resolve_target_sets(specs: Sequence[str], bench: Benchmark, data_dir: str | None, *,
                        notice: Callable[[str], None] = note) -> list[TargetSet]:
    """Each entry of ``specs`` as a named set: published sets where the data has them. Inline
    targets are gathered into one set named ``inline``. ``notice`` receives the one line said
    when the default sets fall back to a generated sample."""
    out: list[TargetSet] = []
    inline: list[TargetSet] = []
    for spec in specs:
        if spec == "all":
            out.append(all_targets(bench.attributes, bench.levels))
        elif spec == GENERATED_SAMPLED:
            out.append(sampled_targets(bench.attributes, bench.levels))
        elif spec == "sampled":
            found = published_targets(bench.name, spec, data_dir)
            if found is None and list(specs) == list(DEFAULT_SETS):
                notice(f"no published sampled set for {bench.name}: the default sets use "
                       f"{GENERATED_SAMPLED} (generated) instead")
                found = sampled_targets(bench.attributes, bench.levels)
            elif found is None:
                raise InputError(
                    f"no published sampled target set for {bench.name} (looked in "
                    f"{published_locations(bench.name, spec, data_dir)})", field="targets",
                    hint=f"put the published files there, pass `data`, or ask for "
                         f"{GENERATED_SAMPLED} (generated, named as such)")
            out.append(found)
        elif spec in ("high", "low"):
            # Defined sets (every attribute at 1, at 0): generating them substitutes nothing.
            found = published_targets(bench.name, spec, data_dir)
            out.append(found if found is not None else
                       (high_target if spec == "high" else low_target)(bench.attributes))
        elif is_inline(spec):
            inline.append(parse_inline(spec, bench.attributes))
        else:
            out.append(load_target_files([spec], bench.attributes))
    if inline:
        out.append(concat(inline, "inline") if len(inline) > 1 else inline[0])
    return out
