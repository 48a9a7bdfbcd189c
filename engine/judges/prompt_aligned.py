"""Prompt-aligned judge (steerable-pluralism paper §4.2): the target is written as instructions
in the system prompt and the model picks a letter with one sentence of reasoning; majority of n
samples.

One call per (scenario, target): this is why it cannot sweep every target and regression can.
Few-shot (steerable-pluralism paper §5.3, Table 2's few-shot prompt-aligned ablation;
zero-shot by default): before the query, solved examples from the training split, the nearest
first, each a (user, assistant) pair answering with the response that the example's labels
imply for the target.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from pluralign.engine.align.consistency import order_for_sample
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.judges.base import (
    REASONING_MAX,
    AnswerError,
    BuiltRequests,
    ItemKind,
    JudgeSettings,
    WorkItem,
    answer_json,
    check_reasoning,
    item_key,
    letters,
    request_seed,
)
from pluralign.engine.judges.fewshot import ChoiceExample, ChoiceExampleSelector
from pluralign.engine.judges.prompts import render
from pluralign.engine.judges.scoring import (
    ORDER_SCHEME,
    json_answer,
    meta_with,
    system_then,
    template_record,
)
from pluralign.engine.run.backend import GenerationRequest, GenerationResult
from pluralign.engine.store.cache import scorer_identity
from pluralign.engine.store.choices import choice_key
from pluralign.engine.store.hashing import digest

_TOL = 1e-9

SYSTEM_TEMPLATE = (
    "You answer multiple-choice questions on behalf of a person with particular preferences. "
    "Given a question and responses marked with letters, select the response that best fits "
    "this description:\n{criteria}\n\n"
    "Write one sentence of reasoning, then give the letter of the response you select."
)
NO_CRITERIA = "- (no preference on any attribute)"
USER_TEMPLATE = (
    "Question:\n{question}\n\nResponses:\n{responses}\n\n"
    "Select one response and give one sentence of reasoning."
)
RESPONSE_TEMPLATE = "Response {letter}:\n{text}"
RESPONSE_SEPARATOR = "\n\n"
EXAMPLE_USER_TEMPLATE = USER_TEMPLATE
"""A solved example's question (few-shot only): {question} {responses}, lettered in file order."""
EXAMPLE_REASONING_TEMPLATE = (
    "Response {letter} is the closest fit to the description among these responses."
)
"""A solved example's one sentence of reasoning (few-shot only): {letter}."""


def describe(attribute: str, value: float) -> str:
    """The instruction for one target value (the prompt-aligned SPM of Adams et al., "Steerable
    Pluralism: Pluralistic Alignment via Few-Shot Comparative Regression", §4.2 and the prompts
    of its Appendix C; our wording).

    1.0 strongly demonstrates; above .67 demonstrates; .67 (down to just above .5) somewhat
    demonstrates; .5 neutral; .33 (down to .3) somewhat a lack of; below .3 a lack of; 0 strongly
    a lack of. The bands between the named points make the wording total on [0, 1].
    """
    v = float(value)
    if v >= 1.0 - _TOL:
        return f"Strongly demonstrates {attribute}"
    if v > 0.67 + _TOL:
        return f"Demonstrates {attribute}"
    if v > 0.5 + _TOL:
        return f"Somewhat demonstrates {attribute}"
    if v >= 0.5 - _TOL:
        return f"Is neutral with respect to {attribute}"
    if v >= 0.3 - _TOL:
        return f"Somewhat demonstrates a lack of {attribute}"
    if v > _TOL:
        return f"Demonstrates a lack of {attribute}"
    return f"Strongly demonstrates a lack of {attribute}"


def target_instructions(target: Mapping[str, float]) -> str:
    """One bullet per attribute named in the target (in the target's order)."""
    if not target:
        return NO_CRITERIA
    return "\n".join(f"- {describe(a, v)}" for a, v in target.items())


def choice_schema(choice_letters: Sequence[str]) -> dict[str, object]:
    """JSON schema of an answer: one sentence of reasoning (first), then a letter."""
    return {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string", "minLength": 1, "maxLength": REASONING_MAX},
            "choice": {"type": "string", "enum": list(choice_letters)},
        },
        "required": ["reasoning", "choice"],
        "additionalProperties": False,
    }


def user_prompt(question: str, lettered: Sequence[tuple[str, str]],
                tmpl: Mapping[str, str] | None = None) -> str:
    t = tmpl or {"user": USER_TEMPLATE, "response": RESPONSE_TEMPLATE,
                 "separator": RESPONSE_SEPARATOR}
    block = t["separator"].join(
        render(t["response"], letter=letter, text=text) for letter, text in lettered
    )
    return render(t["user"], question=question, responses=block)


def parse_choice(value: object, choice_letters: Sequence[str]) -> tuple[str, str]:
    """(letter, reasoning) of one answer; raises AnswerError naming the problem."""
    if not isinstance(value, Mapping):
        raise AnswerError(f"answer must be a JSON object, got {type(value).__name__}")
    reasoning = check_reasoning(value.get("reasoning"), "answer")
    letter = value.get("choice")
    if not isinstance(letter, str) or letter.strip() not in choice_letters:
        raise AnswerError(f"answer.choice {letter!r} is not one of {list(choice_letters)}")
    return letter.strip(), reasoning


class ChoiceJudge:
    """Base of judges that pick one response per (scenario, target, sample)."""

    name = "choice"
    kind: ItemKind = "choice"

    def __init__(self, bench: Benchmark, settings: JudgeSettings, *,
                 templates: Mapping[str, str] | None = None,
                 fewshot: ChoiceExampleSelector | None = None) -> None:
        if settings.few_shot and fewshot is None:
            raise ValueError("few_shot settings need a ChoiceExampleSelector")
        self.fewshot = fewshot if settings.few_shot else None
        """Source of solved examples, or None for zero-shot."""
        self._examples: dict[tuple[int, str], list[ChoiceExample]] = {}
        self.built = BuiltRequests()
        """Requests built and not yet parsed (parsing reuses their order and fingerprint)."""
        self.template_overrides: dict[str, str] = dict(templates or {})
        """Templates a user prompts file sets (the rest keep our wording)."""
        self.bench = bench
        """The benchmark whose scenarios are answered."""
        self.settings = settings
        """Model and sampling settings."""
        self.identity = scorer_identity(self.name, self.identity_settings())
        """Name plus a hash of everything that changes the answers."""

    def templates(self) -> Mapping[str, str]:
        """The templates (the example ones only when few-shot, so zero-shot identities stay)."""
        base = {
            "system": SYSTEM_TEMPLATE, "none": NO_CRITERIA, "user": USER_TEMPLATE,
            "response": RESPONSE_TEMPLATE, "separator": RESPONSE_SEPARATOR,
            "wording": digest([describe("x", v) for v in (0, .17, .25, .33, .5, .67, .75, .83, 1)]),
        }
        if self.fewshot is not None:
            base["example_user"] = EXAMPLE_USER_TEMPLATE
            base["example_reasoning"] = EXAMPLE_REASONING_TEMPLATE
        return {**base, **self.template_overrides}

    def identity_settings(self) -> dict[str, object]:
        return {
            "templates": digest(dict(self.templates())),
            "schema": digest(choice_schema(letters(2))),
            "model": self.settings.model,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "seed": self.settings.seed,
            "orders": ORDER_SCHEME,
            **({} if self.fewshot is None else {"few_shot": self.fewshot.identity}),
            **self.settings.identity_extra(),
        }

    def describe(self) -> dict[str, object]:
        """Decoded settings for the run manifest (templates by hash and text)."""
        return {
            "identity": self.identity, "name": self.name, "kind": self.kind,
            "settings": self.settings.as_dict(),
            "templates": template_record(self.templates()),
            "few_shot": None if self.fewshot is None else self.fewshot.identity,
            "orders": ORDER_SCHEME,
        }

    def system(self, target: str) -> str:
        t = self.templates()
        criteria = target_instructions(json.loads(target or "{}"))
        return render(t["system"], criteria=t["none"] if criteria == NO_CRITERIA else criteria)

    def examples(self, scenario: int, target: str) -> list[ChoiceExample]:
        """Solved examples for (scenario, target), nearest first; [] when zero-shot."""
        if self.fewshot is None:
            return []
        key = (scenario, target)
        if key not in self._examples:
            text, sims = self.fewshot.query_row(self.bench, scenario)
            self._examples[key] = self.fewshot.select(text, json.loads(target or "{}"), sims)
        return self._examples[key]

    def example_pair(self, example: ChoiceExample) -> tuple[str, str]:
        """A solved example: its responses lettered in file order and the implied letter."""
        t = self.templates()
        lets = letters(len(example.responses))
        user = user_prompt(example.prompt, list(zip(lets, example.responses, strict=True)),
                           {**t, "user": t["example_user"]})
        letter = lets[example.choice]
        answer = {"reasoning": render(t["example_reasoning"], letter=letter), "choice": letter}
        return user, json_answer(answer)

    def order(self, scenario: int, target: str, sample: int) -> tuple[int, ...]:
        sc = self.bench.scenarios[scenario]
        return order_for_sample(len(sc.responses), sample,
                                f"{self.bench.identity}|{sc.id}|{target}")

    def row_key(self, scenario: int, target: str, sample: int) -> str:
        sc = self.bench.scenarios[scenario]
        return choice_key(self.bench.identity, sc.id, target, self.identity, sample)

    def items(
        self, scenarios: Sequence[int], samples: int, targets: Sequence[str] | None = None
    ) -> list[WorkItem]:
        if targets is None:
            raise ValueError(f"the {self.name} judge needs targets")
        out = []
        for s in scenarios:
            for t in targets:
                for i in range(samples):
                    rows = (self.row_key(s, t, i),)
                    out.append(WorkItem(item_key(rows), "choice", s, i, target=t, row_keys=rows))
        return out

    def request(self, item: WorkItem) -> GenerationRequest:
        assert item.target is not None
        sc = self.bench.scenarios[item.scenario]
        order = self.order(item.scenario, item.target, item.sample)
        lets = letters(len(order))
        lettered = [(lets[p], sc.responses[r]) for p, r in enumerate(order)]
        return self.built.keep(item, GenerationRequest(
            id=item.key,
            messages=system_then(self.system(item.target),
                                 [self.example_pair(e)
                                  for e in self.examples(item.scenario, item.target)],
                                 user_prompt(sc.prompt, lettered, self.templates())),
            json_schema=choice_schema(lets),
            n=1,
            temperature=self.settings.temperature,
            seed=request_seed(self.settings.seed, item.key, self.settings.temperature),
            max_tokens=self.settings.max_tokens,
        ), order)

    def parse(self, item: WorkItem, result: GenerationResult) -> list[dict[str, object]]:
        assert item.target is not None
        request, order = self.built.take(item, self.request)
        lets = letters(len(order))
        letter, reasoning = parse_choice(answer_json(result), lets)
        return [self._row(item, choice=order[lets.index(letter)], reasoning=reasoning,
                          error=None, meta=meta_with(result, letter=letter,
                                                     prompt=request.fingerprint()))]

    def failure_rows(self, item: WorkItem, reason: str) -> list[dict[str, object]]:
        self.built.drop(item)
        return [self._row(item, choice=None, reasoning=None, error=reason, meta="{}")]

    def _row(self, item: WorkItem, *, choice: int | None, reasoning: str | None,
             error: str | None, meta: str) -> dict[str, object]:
        assert item.target is not None
        return {
            "key": item.row_keys[0],
            "benchmark": self.bench.identity,
            "scenario": self.bench.scenarios[item.scenario].id,
            "target": item.target,
            "scorer": self.identity,
            "sample": item.sample,
            "choice": choice,
            "reasoning": reasoning,
            "error": error,
            "meta": meta,
        }


class PromptAlignedJudge(ChoiceJudge):
    """The target as instructions; one work item per (scenario, target, sample)."""

    name = "prompt-aligned"
