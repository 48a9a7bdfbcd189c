"""In-context alignment prompts from retrieved scenarios (SPICA §3.3 and A.7.2, our wording).

Setups: ``control`` (base instruction only); Positive (best-rated class) or Contrastive (best and
worst) examples, shown as Instructions (the class's strategy) or Responses (a response text):
``P-I``, ``C-I``, ``P-R``, ``C-R``. Labels are the rating scale's words for the group's
consensus rating of what is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pluralign.engine.errors import InputError
from pluralign.engine.run.backend import Message
from pluralign.engine.spica.bank import RatingKind, ScenarioBank, where
from pluralign.engine.spica.group_metrics import consensus

SETUPS: tuple[str, ...] = ("control", "P-I", "C-I", "P-R", "C-R")
"""Every prompt setup, control first."""

BASE_INSTRUCTION = (
    "You are an assistant answering people's requests. Be as useful as you can while staying "
    "honest, respectful and safe."
)
"""The shared base instruction; on its own it is the control prompt."""

_INTRO = {
    False: "Here are examples of how replies to similar requests were judged, to show you how "
           "to answer appropriately:",
    True: "Here are examples of better and worse ways to reply to similar requests, with how "
          "they were judged, to show you how to answer appropriately:",
}
_OUTRO = "Reply to the user's request directly; do not repeat the example headings."

Role = Literal["best", "worst"]


@dataclass(frozen=True)
class PromptExample:
    """One class of one retrieved scenario, as shown in a prompt."""

    scenario: str
    """Scenario id."""
    prompt: str
    """The scenario's prompt."""
    role: Role
    """``best`` (highest consensus) or ``worst`` (lowest)."""
    cls: str
    """Response class shown."""
    rating: float
    """The group's consensus rating of it."""
    label: str
    """The scale's word for that rating."""
    content: str
    """The strategy (instruction setups) or response text (response setups)."""


@dataclass(frozen=True)
class AlignmentPrompt:
    """A ready-to-send prompt for one (query, group, setup)."""

    setup: str
    group: str
    query: str
    examples: tuple[PromptExample, ...]
    messages: tuple[Message, ...]

    @property
    def system(self) -> str:
        return self.messages[0].content


def check_setup(setup: str) -> str:
    if setup not in SETUPS:
        raise InputError(f"unknown prompt setup {setup!r}", field="setup",
                         hint=f"choose from {', '.join(SETUPS)}")
    return setup


def _consensus_row(bank: ScenarioBank, s: int, group: str, kind: RatingKind) -> np.ndarray:
    row: np.ndarray = consensus(bank.ratings(group, kind)[s:s + 1])[0]
    return row


def _best_worst(row: np.ndarray) -> tuple[int, int]:
    """Best = first class with the highest consensus; worst = first class with the lowest
    among the others (so a contrastive example always shows two different classes)."""
    ok = ~np.isnan(row)
    best = int(np.argmax(np.where(ok, row, -np.inf)))
    others = ok.copy()
    others[best] = False
    if not others.any():
        return best, best
    worst = int(np.argmin(np.where(others, row, np.inf)))
    return best, worst


def _response_text(bank: ScenarioBank, s: int, group: str, c: int) -> str:
    """The text of class ``c`` the group's raters saw most often (ties: lowest index)."""
    sc = bank.scenarios[s]
    cls = bank.classes[c]
    texts = sc.responses[cls]
    if not texts:
        raise InputError("no response text to show", record=where(sc.id, group, cls=cls),
                         field=f"responses.{cls}", hint="generate responses for this class")
    seen = bank.rated_index(group)[s, :, c]
    seen = seen[seen >= 0]
    idx = int(np.bincount(seen).argmax()) if seen.size else 0
    return texts[idx]


def choose_examples(
    bank: ScenarioBank, scenario_index: int, group: str, setup: str
) -> tuple[PromptExample, ...]:
    """The classes shown for one retrieved scenario under ``setup``.

    Instruction setups rank classes by the group's strategy ratings, response setups by its
    response ratings; if the group gave none of that kind here, the other kind is used.
    """
    check_setup(setup)
    if setup == "control":
        return ()
    kind: RatingKind = "strategy" if setup.endswith("-I") else "response"
    other: RatingKind = "response" if kind == "strategy" else "strategy"
    row = _consensus_row(bank, scenario_index, group, kind)
    if np.isnan(row).all():
        row = _consensus_row(bank, scenario_index, group, other)
    sc = bank.scenarios[scenario_index]
    if np.isnan(row).all():
        raise InputError("the group rated no class of this scenario",
                         record=where(sc.id, group), field="ratings")
    best, worst = _best_worst(row)
    shown: list[tuple[Role, int]] = [("best", best)]
    if setup.startswith("C-") and worst != best:
        shown.append(("worst", worst))
    out = []
    for role, c in shown:
        cls = bank.classes[c]
        if setup.endswith("-I"):
            content = bank.strategies[cls]
            if not content:
                raise InputError("response class has no strategy description",
                                 record=where(sc.id, group, cls=cls), field="strategy")
        else:
            content = _response_text(bank, scenario_index, group, c)
        r = float(row[c])
        out.append(PromptExample(sc.id, sc.prompt, role, cls, r, bank.meta.scale.label(r),
                                 content))
    return tuple(out)


def render_system(setup: str, examples: Sequence[Sequence[PromptExample]]) -> str:
    """The system prompt: base instruction, then one block per retrieved scenario."""
    if setup == "control" or not examples:
        return BASE_INSTRUCTION
    noun = "approach" if setup.endswith("-I") else "reply"
    parts = [BASE_INSTRUCTION, "", _INTRO[setup.startswith("C-")]]
    for i, shown in enumerate(examples, start=1):
        parts += ["", f"# Example {i}", "# Request:", f"```{shown[0].prompt}```"]
        for ex in shown:
            parts += [f"## {ex.label} {noun}:", f"```{ex.content}```"]
    parts += ["", _OUTRO]
    return "\n".join(parts)


def build_prompt(
    bank: ScenarioBank, query: str, group: str, setup: str, retrieved: Sequence[int]
) -> AlignmentPrompt:
    """The prompt for ``query`` aligned to ``group`` with the retrieved bank scenarios."""
    check_setup(setup)
    bank.check_group(group)
    per = [choose_examples(bank, int(s), group, setup) for s in retrieved]
    if setup == "control":
        per = []
    system = render_system(setup, per)
    messages = (Message("system", system), Message("user", query))
    return AlignmentPrompt(setup, group, query, tuple(e for ex in per for e in ex), messages)
