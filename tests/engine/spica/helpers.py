"""Small hand-made banks shared by the SPICA tests."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.engine.spica.bank import ScenarioBank, make_bank
from pluralign.schemas.spica import BankMeta, BankScenario, ClassRating, RaterRecord, ResponseClass

CLASSES = (ResponseClass("refuse", "say no politely"), ResponseClass("facts", "state the facts"),
           ResponseClass("opine", "give an opinion"))
META = BankMeta("tiny", CLASSES)


def rater(name: str, groups: Sequence[str], response: Sequence[int | None],
          strategy: Sequence[int | None] | None = None,
          seen: Sequence[int | None] | None = None) -> RaterRecord:
    strategy = strategy if strategy is not None else response
    seen = seen if seen is not None else [0] * len(response)
    return RaterRecord(name, tuple(groups), {
        c.name: ClassRating(r, s, i)
        for c, r, s, i in zip(CLASSES, response, strategy, seen, strict=True)
    })


def scenario(sid: str, prompt: str, raters: Sequence[RaterRecord], split: str = "train",
             texts: int = 2) -> BankScenario:
    return BankScenario(sid, prompt, {c.name: tuple(f"{sid} {c.name} text {i}"
                                                    for i in range(texts)) for c in CLASSES},
                        tuple(raters), split)


def bank(scenarios: Sequence[BankScenario]) -> ScenarioBank:
    return make_bank(META, scenarios, source="test")
