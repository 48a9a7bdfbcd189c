"""Plain typed records that cross module and process boundaries.

They are frozen dataclasses so they pickle cheaply into Ray actors and hash by value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scenario:
    """One benchmark item: a prompt, its candidate responses and their attribute labels."""

    id: str
    """Stable identifier, unique within a benchmark split."""
    prompt: str
    """The question or situation shown to the model."""
    responses: tuple[str, ...]
    """Candidate responses (at least two)."""
    labels: tuple[Mapping[str, float], ...]
    """Per response, attribute -> true value in [0, 1]."""
    reasonings: tuple[Mapping[str, str], ...] | None = None
    """Per response, attribute -> one sentence explaining the label (training items only)."""


@dataclass(frozen=True)
class ScoreRecord:
    """One predicted attribute score for one response, as stored in the score cache."""

    benchmark: str
    """Benchmark identity (name and content hash), e.g. ``helpsteer2/eval@1a2b3c``."""
    scenario: str
    """Scenario id."""
    response: int
    """Response index within the scenario."""
    attribute: str
    """Attribute name."""
    scorer: str
    """Scorer identity: name plus a hash of every setting that changes the answer."""
    sample: int
    """Sample index (self-consistency); 0 for deterministic scorers."""
    score: float
    """Predicted value, normally in [0, 1]."""
    reasoning: str = ""
    """The model's reasoning for this score, if any."""
    meta: Mapping[str, str] = field(default_factory=dict)
    """Free-form provenance (token usage, latency); never part of the key."""


@dataclass(frozen=True)
class TargetResult:
    """Accuracy of one scorer for one alignment target over one benchmark split."""

    target: Mapping[str, float]
    """Attribute -> desired value; neutral (0.5) attributes are absent."""
    counted: int
    """Scenarios where the labels do not tie on every response."""
    correct: int
    """Counted scenarios where the chosen response is among the label-closest."""

    @property
    def accuracy(self) -> float | None:
        """Percent correct, or None for a target with no counted scenario (the empty target)."""
        return None if self.counted == 0 else 100.0 * self.correct / self.counted
