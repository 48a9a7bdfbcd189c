"""A label-oracle answerer for the FAKE OpenAI-compatible server (tests and offline demos only).

It reads a judge's prompt back (question, lettered responses, attribute or target), looks the
responses' true labels up in the benchmark and answers the judge's schema with those labels plus
seeded Gaussian noise, so end-to-end accuracy through the fake server means something.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.jsontypes import JSONObject
from pluralign.engine.judges.base import SCALE, letters
from pluralign.engine.store.hashing import seed_of

Answerer = Callable[[JSONObject], str]
"""Request body (parsed JSON) -> one choice's message content."""

_HEADER = "Response {letter}:\n"
_SCORE_TAIL = re.compile(r"write one sentence of reasoning about (?:its|the response's) "
                         r"(?P<attr>.+?), then score it from 0", re.S | re.I)
_CRITERION = re.compile(r"^- (?P<text>.+)$", re.M)
_WORDING = (  # longest phrases first so "Strongly demonstrates a lack of" wins over shorter ones
    ("Strongly demonstrates a lack of ", 0.0),
    ("Somewhat demonstrates a lack of ", 0.33),
    ("Demonstrates a lack of ", 0.2),
    ("Is neutral with respect to ", 0.5),
    ("Strongly demonstrates ", 1.0),
    ("Somewhat demonstrates ", 0.67),
    ("Demonstrates ", 0.8),
)


def _content(message: JSONObject) -> str:
    content = message.get("content", "")
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return str(content)


def split_prompt(user: str) -> tuple[str, list[str]]:
    """(question, responses in the order shown) from a judge's user prompt."""
    start = user.index("Question:\n") + len("Question:\n")
    if "\n\nResponses:\n" in user:
        q_end = user.index("\n\nResponses:\n", start)
        body_start = q_end + len("\n\nResponses:\n")
        tail = user.rindex("\n\n")
        texts: list[str] = []
        pos = body_start
        for i, letter in enumerate(letters(26)):
            header = _HEADER.format(letter=letter)
            if not user.startswith(header, pos):
                break
            begin = pos + len(header)
            nxt = _HEADER.format(letter=letters(26)[i + 1]) if i < 25 else None
            end = user.find("\n\n" + nxt, begin) if nxt else -1
            texts.append(user[begin: end if end != -1 else tail])
            if end == -1:
                break
            pos = end + 2
        return user[start:q_end], texts
    q_end = user.index("\n\nResponse:\n", start)
    begin = q_end + len("\n\nResponse:\n")
    return user[start:q_end], [user[begin: user.rindex("\n\n")]]


def parse_target(system: str) -> dict[str, float]:
    """Approximate target values from a prompt-aligned system prompt's bullets."""
    target: dict[str, float] = {}
    for m in _CRITERION.finditer(system):
        text = m.group("text")
        for phrase, value in _WORDING:
            if text.startswith(phrase):
                target[text[len(phrase):].strip()] = value
                break
    return target


class LabelAnswerer:
    """Answers judge prompts from a benchmark's labels plus noise (sd ``noise`` in [0,1] units)."""

    def __init__(self, bench: Benchmark, *, noise: float = 0.1, seed: int = 0) -> None:
        self.bench = bench
        self.noise = noise
        self.seed = seed
        self._by_pair: dict[tuple[str, str], Mapping[str, float]] = {}
        self._by_text: dict[str, Mapping[str, float]] = {}
        for sc in bench.scenarios:
            for text, lab in zip(sc.responses, sc.labels, strict=True):
                self._by_pair[(sc.prompt, text)] = lab
                self._by_text.setdefault(text, lab)

    def __call__(self, body: JSONObject) -> str:
        messages = list(body.get("messages", []))
        system = _content(messages[0]) if messages else ""
        user = _content(messages[-1]) if messages else ""
        question, texts = split_prompt(user)
        labels = [self._label(question, t) for t in texts]
        rng = self._rng(body)
        tail = _SCORE_TAIL.search(user[user.rindex("\n\n"):])
        if tail is not None:
            return self._scores(tail.group("attr"), labels, rng, many="Responses:" in user)
        return self._choice(parse_target(system), labels, rng)

    def _label(self, question: str, text: str) -> Mapping[str, float]:
        lab = self._by_pair.get((question, text)) or self._by_text.get(text)
        if lab is None:
            raise KeyError("fake answerer: response not found in the benchmark")
        return lab

    def _rng(self, body: JSONObject) -> np.random.Generator:
        blob = json.dumps([self.seed, body.get("messages"), body.get("seed"),
                           body.get("temperature")], sort_keys=True, default=str)
        return np.random.default_rng(seed_of(blob))

    def _noisy(self, value: float, rng: np.random.Generator) -> int:
        return int(np.clip(round((value + rng.normal(0.0, self.noise)) * SCALE), 0, SCALE))

    def _scores(self, attribute: str, labels: Sequence[Mapping[str, float]],
                rng: np.random.Generator, *, many: bool) -> str:
        answers = [
            {"reasoning": f"Fake judge: noisy true {attribute}.",
             "score": self._noisy(float(lab[attribute]), rng)}
            for lab in labels
        ]
        if not many:
            return json.dumps(answers[0])
        return json.dumps(dict(zip(letters(len(answers)), answers, strict=True)))

    def _choice(self, target: Mapping[str, float], labels: Sequence[Mapping[str, float]],
                rng: np.random.Generator) -> str:
        if target:
            attrs = [a for a in target if a in labels[0]]
            dist = [
                float(np.linalg.norm([lab[a] + rng.normal(0.0, self.noise) - target[a]
                                      for a in attrs]))
                for lab in labels
            ]
            pick = int(np.argmin(dist))
        else:  # unaligned: the best response on average, like a model's own preference
            means = [float(np.mean(list(lab.values()))) + rng.normal(0.0, self.noise)
                     for lab in labels]
            pick = int(np.argmax(means))
        return json.dumps({"reasoning": "Fake judge: closest by noisy labels.",
                           "choice": letters(len(labels))[pick]})


def label_answerer(bench: Benchmark, *, noise: float = 0.1, seed: int = 0) -> Answerer:
    """The fake server's answerer for judges over ``bench`` (see :class:`LabelAnswerer`)."""
    return LabelAnswerer(bench, noise=noise, seed=seed)
