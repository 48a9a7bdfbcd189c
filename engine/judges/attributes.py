"""Attribute definitions the judges put in their system prompts, in the project's own words.

HelpSteer2's five preference attributes and the six moral foundations of MIC, one or two
sentences each. Unknown attributes (synthetic benchmarks) get a generic sentence so the judges
still work; callers may pass their own definitions instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from pluralign.engine.errors import InputError

_DEFINITIONS: dict[str, str] = {
    # HelpSteer2
    "helpfulness": (
        "Helpfulness is how fully a response meets the need behind the question: it does what "
        "was asked and leaves the person better able to act."
    ),
    "correctness": (
        "Correctness is whether everything the response states is true and relevant, with no "
        "errors, made-up facts or missing points the question requires."
    ),
    "coherence": (
        "Coherence is how clear and consistent the response is: its parts follow logically, it "
        "does not contradict itself, and it is easy to follow."
    ),
    "complexity": (
        "Complexity is the depth of expertise the response needs: a high score means only a "
        "specialist could write it, a low score means anyone with basic language skills could."
    ),
    "verbosity": (
        "Verbosity is how much detail the response gives relative to what the question asks "
        "for: a high score means long and expansive, a low score means brief and to the point."
    ),
    # Moral foundations (MIC)
    "care": (
        "Care is concern for the wellbeing of others: preventing harm, showing kindness and "
        "protecting those who are vulnerable."
    ),
    "fairness": (
        "Fairness is treating people justly and equally: honouring reciprocity and rights, and "
        "opposing cheating or discrimination."
    ),
    "liberty": (
        "Liberty is respect for people's freedom to make their own choices and resistance to "
        "domination, coercion or oppression."
    ),
    "loyalty": (
        "Loyalty is faithfulness to one's group, family or nation: standing by them, keeping "
        "commitments and not betraying them."
    ),
    "authority": (
        "Authority is respect for legitimate leadership, tradition and social order: deferring "
        "to rules, roles and those responsible for them."
    ),
    "sanctity": (
        "Sanctity is regard for purity and the sacred: avoiding what is degrading or "
        "disgusting and honouring what people hold holy or dignified."
    ),
}

ATTRIBUTE_DEFINITIONS: Mapping[str, str] = MappingProxyType(_DEFINITIONS)
"""Built-in definitions by attribute name (read-only)."""


def generic_definition(attribute: str) -> str:
    """The sentence used for an attribute without a built-in definition."""
    return f"'{attribute}' is the quality of a response that this attribute names."


def check_definitions(definitions: Mapping[str, str], attributes: Iterable[str], *,
                      file: str | None = None) -> None:
    """Every defined attribute is one of ``attributes`` or has a built-in definition (one file
    may define both benchmarks' attributes); else an InputError naming the first other one (a
    typo would otherwise be ignored silently)."""
    attributes = list(attributes)
    unknown = [a for a in definitions if a not in attributes and a not in _DEFINITIONS]
    if unknown:
        raise InputError(f"a definition for unknown attribute {unknown[0][:40]!r}", file=file,
                         record="definitions", field=unknown[0][:40],
                         hint=f"attributes: {', '.join(sorted(attributes))}")


def definitions_for(
    attributes: Sequence[str], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Definition per attribute: ``overrides`` first, then built-ins, then a generic sentence;
    an override for an attribute neither given nor built in is refused.

    The result goes into every judge's identity, so editing a definition misses the cache.
    """
    if overrides:
        check_definitions(overrides, attributes)
    out: dict[str, str] = {}
    for a in attributes:
        if overrides is not None and a in overrides:
            text = overrides[a]
            if not isinstance(text, str) or not text.strip():
                raise InputError("definition must be a non-empty string",
                                 record=a, field="definition")
            out[a] = text.strip()
        else:
            out[a] = _DEFINITIONS.get(a, generic_definition(a))
    return out
