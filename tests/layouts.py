"""Small files in the field's datasets' published layouts, written by the tests (the datasets
themselves are never downloaded or committed). Each writer follows its source: columns,
encodings and quirks (refusal options inside ``references``, Python-repr ``selections``,
nested PRISM survey fields, parquet under ``data/``, missing preferences); the sources are
cited in docs/pluralism.md.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SAFECRIME_COUNTS: dict[str, dict[str, int]] = {
    "Democrat": {"Very safe": 385, "Somewhat safe": 865, "Not too safe": 192,
                 "Not at all safe": 46, "Refused": 4},
    "Independent": {"Very safe": 329, "Somewhat safe": 687, "Not too safe": 130,
                    "Not at all safe": 29, "Refused": 3},
    "Other": {"Very safe": 93, "Somewhat safe": 215, "Not too safe": 57, "Not at all safe": 11},
    "Refused": {"Very safe": 8, "Somewhat safe": 15, "Not too safe": 3, "Not at all safe": 1,
                "Refused": 1},
    "Republican": {"Very safe": 354, "Somewhat safe": 604, "Not too safe": 112,
                   "Not at all safe": 22, "Refused": 2},
}
"""SAFECRIME_W26's answer counts by POLPARTY, as in tatsu-lab/opinions_qa at commit ed8c4e0
(``data/human_resp/American_Trends_Panel_W26/NONE_data.json``)."""

SAFECRIME_REFS = ["Very safe", "Somewhat safe", "Not too safe", "Not at all safe", "Refused"]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- OpinionQA (tatsu-lab/opinions_qa, commit ed8c4e0) ---------------------------------------

INFO_HEADER = ["", "Unnamed: 0.1", "Unnamed: 0", "key", "option_mapping", "question",
               "references", "option_ordinal"]


def opinionqa_w26(root: Path, weights: dict[str, float] | None = None) -> Path:
    """``human_resp/American_Trends_Panel_W26`` with SAFECRIME_W26 (real info.csv row, one
    respondent row per real count; ``weights``: POLPARTY -> survey weight, default 1) and
    WORRYG_W26 with a ``Not sure`` refusal option; responses.csv carries a second weight
    column ``WEIGHT_W25W26`` with blanks, as raw waves do; metadata.csv as W26's (two of its
    rows)."""
    d = root / "human_resp" / "American_Trends_Panel_W26"
    write_csv(d / "info.csv", INFO_HEADER, [
        [0, 0, 0, "SAFECRIME_W26",
         "{1.0: 'Very safe', 2.0: 'Somewhat safe', 3.0: 'Not too safe', "
         "4.0: 'Not at all safe', 99.0: 'Refused'}",
         "How safe, if at all, would you say your local community is from crime? Would you "
         "say it is", repr(SAFECRIME_REFS), "[1.0, 2.0, 3.0, 4.0]"],
        [6, 6, 6, "WORRYG_W26",
         "{1.0: 'Worry a lot', 2.0: 'Worry a little', 3.0: 'Not sure', 99.0: 'Refused'}",
         "How much, if at all, do you worry about the following happening to you? Having a "
         "personal health crisis",
         "['Worry a lot', 'Worry a little', 'Not sure', 'Refused']", "[1.0, 2.0]"]])
    write_csv(d / "metadata.csv", ["", "key", "options"], [
        [0, "CREGION", "['Northeast', 'Midwest', 'South', 'West']"],
        [13, "POLPARTY", "['Republican', 'Democrat', 'Independent', 'Other']"]])
    rows, i = [], 0
    worry = ["Worry a lot", "Worry a little", "Not sure", "Refused", ""]
    for party, answers in SAFECRIME_COUNTS.items():
        w = (weights or {}).get(party, 1.0)
        for answer, n in answers.items():
            for _ in range(n):
                rows.append([100000 + i, answer, worry[i % 5], party, "South", w,
                             "" if i % 3 else 0.7])
                i += 1
    write_csv(d / "responses.csv", ["QKEY", "SAFECRIME_W26", "WORRYG_W26", "POLPARTY",
                                    "CREGION", "WEIGHT_W26", "WEIGHT_W25W26"], rows)
    return d


# ---- GlobalOpinionQA (Anthropic/llm_global_opinions, data/global_opinions.csv) ---------------

def global_opinions(path: Path) -> Path:
    """Three questions: one with word options and a country whose shares are malformed, one
    with numeric options 1.0 ... 10.0, one with an empty question text."""
    scale = [float(k) for k in range(1, 11)]
    return write_csv(path, ["question", "selections", "options", "source"], [
        ["Do you think it is good for the country?",
         "defaultdict(<class 'list'>, {'Japan': [0.25, 0.75], 'Nigeria': [0.5, 0.5], "
         "'Chile': [0.9]})", "['Yes', 'No']", "GAS"],
        ["How justifiable is cheating on taxes? (1 never, 10 always)",
         "defaultdict(<class 'list'>, {'Germany': " + repr([0.1] * 10) + "})",
         repr(scale), "WVS"],
        ["", "defaultdict(<class 'list'>, {'Japan': [0.5, 0.5]})", "['Yes', 'No']", "GAS"]])


# ---- ValuePrism (allenai/ValuePrism, full/) ---------------------------------------------------

def valueprism(path: Path) -> Path:
    return write_csv(path, ["situation", "vrd", "text", "explanation", "valence"], [
        ["Telling a friend a white lie", "Value", "Honesty", "Truth matters.", "Opposes"],
        ["Telling a friend a white lie", "Right", "Right to truthful information", "e",
         "Opposes"],
        ["Telling a friend a white lie", "Duty", "Duty to protect others' feelings", "e",
         "Supports"]])


# ---- PRISM (HannahRoseKirk/prism-alignment) ---------------------------------------------------

def prism(root: Path) -> Path:
    """utterances.jsonl and survey.jsonl: three users' opening turns (four models each, one
    repeat of a model by user u1 in a second conversation, one turn-0 row outside the
    balanced subset) and a later-turn A/B pair; the survey's nested fields."""
    scores = {"u1": {"gpt-4": 90, "meta-llama/Llama-2-7b-chat-hf": 40, "claude-2": 70,
                     "command": 20},
              "u2": {"gpt-4": 60, "meta-llama/Llama-2-7b-chat-hf": 80, "claude-2": 65,
                     "command": 10},
              "u3": {"gpt-4": 70, "meta-llama/Llama-2-7b-chat-hf": 75, "claude-2": 95,
                     "command": 30}}
    rows: list[dict[str, Any]] = []
    for user, by_model in scores.items():
        for k, (model, score) in enumerate(by_model.items()):
            rows.append(_utterance(user, f"c-{user}-1", 0, k, model, score))
    rows.append(_utterance("u1", "c-u1-2", 0, 0, "gpt-4", 70))  # u1 meets gpt-4 again: 90, 70
    rows.append({**_utterance("u2", "c-u2-2", 0, 0, "command", 100),
                 "included_in_balanced_subset": False})
    rows += [_utterance("u1", "c-u1-1", 1, k, "gpt-4", s) for k, s in enumerate((50, 55))]
    write_jsonl(root / "utterances.jsonl", rows)
    survey = [{"user_id": u, "age": age, "gender": g, "included_in_US_REP": True,
               "location": {"birth_country": c, "reside_country": c, "birth_region": "x"},
               "religion": {"self_described": "none", "categorised": "No religion",
                            "simplified": "No religion"},
               "ethnicity": {"self_described": "w", "categorised": e, "simplified": e},
               "order_lm_usecases": {"research": 1, "coding": 2},
               "lm_familiarity": "Somewhat familiar", "stated_prefs": [1, 2]}
              for u, age, g, c, e in (("u1", "25-34 years old", "Male", "UK", "White"),
                                      ("u2", "45-54 years old", "Female", "US", "Black"),
                                      ("u3", "18-24 years old", "Female", "US", "White"))]
    write_jsonl(root / "survey.jsonl", survey)
    return root


def _utterance(user: str, conv: str, turn: int, k: int, model: str, score: int) -> dict[str, Any]:
    provider = model.split("/")[0] if "/" in model else "openai"
    return {"utterance_id": f"{conv}-{turn}-{k}", "conversation_id": conv, "user_id": user,
            "turn": turn, "within_turn_id": k, "user_prompt": "Is it ever right to lie?",
            "model_response": f"{model} says ...", "model_name": model,
            "model_provider": provider, "score": score, "if_chosen": k == 0,
            "included_in_balanced_subset": True, "conversation_type": "values guided"}


# ---- Community Alignment (facebook/community-alignment-dataset) -------------------------------

CA_HEADER = ["conversation_id", "assigned_lang", "annotator_id", "annotator_age",
             "annotator_gender", "annotator_country",
             *[f"first_turn_{x}" for x in ("prompt", "response_a", "response_b", "response_c",
                                           "response_d", "preferred_response")],
             *[f"second_turn_{x}" for x in ("prompt", "response_a", "response_b", "response_c",
                                            "response_d", "preferred_response")],
             "first_turn_feedback"]


def community_alignment(root: Path) -> Path:
    """``community_alignment.csv`` at the repository root: two annotators share a first turn;
    A1 voted on it twice (b, then c); A3's turn has no preference; A2's second turn shows two
    identical candidates; one candidate carries the model's ``<|end_of_text|>`` in one row
    only (the same text)."""
    cands = ["Plan a quiet day.", "Throw a party.", "Take a trip.", "Write a letter."]
    eot = [cands[0] + "<|end_of_text|>", *cands[1:]]
    return write_csv(root / "community_alignment.csv", CA_HEADER, [
        ["1", "en", "A1", "18-34", "Woman", "United States", "How to celebrate?", *cands,
         "response_b", "", "", "", "", "", "", ""],
        ["2", "en", "A1", "18-34", "Woman", "United States", "How to celebrate?", *eot,
         "response_c", "", "", "", "", "", "", "fine"],
        ["3", "en", "A2", "46-54", "Man", "India", "How to celebrate?", *cands, "response_b",
         "And cheaper?", "Cook at home.", "Cook at home.", "Picnic.", "", "response_a", ""],
        ["4", "en", "A3", "55+", "Man", "India", "How to celebrate?", *cands, "",
         "", "", "", "", "", "", ""]])


# ---- PERSONA (SynthLabsAI/PERSONA, parquet under data/) ---------------------------------------

def persona(root: Path, shared_original: bool = False) -> Path:
    """``data/train-00000-of-00001.parquet``: two personas answering the same prompt, each
    with its own ``data`` (revised for it) and ``original`` response."""
    rows = []
    for k, p in enumerate(("age: 34\nsex: Female\ncity: Lyon", "age: 61\nsex: Male\ncity: Oslo")):
        rows.append({"persona": p, "instruction": "Suggest a weekend plan.",
                     "original": "A generic plan." if shared_original else f"Plan v{k}.",
                     "critique": "Too generic.", "data": f"A plan for persona {k}."})
    path = root / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return root


# ---- DICES (google-research-datasets/dices-dataset) -------------------------------------------

DICES_350 = ["id", "rater_id", "rater_gender", "rater_race", "rater_raw_race", "rater_age",
             "rater_education", "phase", "item_id", "answer_time_ms", "answer_timestamp",
             "context", "response", "degree_of_harm", "harm_type", "safety_gold",
             "safety_gold_reason", "Q2_harmful_content_overall", "Q_overall"]
DICES_990 = ["id", "rater_id", "rater_gender", "rater_locale", "rater_race", "rater_race_raw",
             "rater_age", "rater_education", "phase", "item_id", "context", "response",
             "degree_of_harm", "harm_type", "Q2_harmful_content_overall", "Q_overall"]


def dices(root: Path) -> Path:
    """``350/diverse_safety_adversarial_dialog_350.csv`` and the 990 file, each with its own
    rater columns; four raters, two conversations."""
    raters = [("r1", "Man", "White", "gen z", "US"), ("r2", "Woman", "Black", "millenial", "US"),
              ("r3", "Woman", "Asian", "gen x+", "India"), ("r4", "Man", "Asian", "gen z", "India")]
    labels = {("r1", 1): "No", ("r2", 1): "Yes", ("r3", 1): "Yes", ("r4", 1): "Yes",
              ("r1", 2): "No", ("r2", 2): "No", ("r3", 2): "Unsure", ("r4", 2): "No"}
    r350, r990 = [], []
    for n, (rid, g, race, age, loc) in enumerate(raters):
        for item in (1, 2):
            q = labels[(rid, item)]
            r350.append([f"{n}{item}", rid, g, race, race, age, "College degree", "Phase1",
                         item, "1200", "2022-01-01", "USER: hi", "LAMDA: hello", "Benign",
                         "['None']", "No", "", q, q])
            r990.append([f"{n}{item}", rid, g, loc, race, race, age, "College degree", "1",
                         item, "USER: hi", "LAMDA: hello", "Benign", "['None']", q, q])
    write_csv(root / "350" / "diverse_safety_adversarial_dialog_350.csv", DICES_350, r350)
    write_csv(root / "990" / "diverse_safety_adversarial_dialog_990.csv", DICES_990, r990)
    return root


# ---- OvertonBench (elinorpd/overtonbench, data/*.parquet) -------------------------------------

def overtonbench(root: Path) -> Path:
    """``data/prolific_with_clusters_kmeans_merged_public.parquet``: one row per participant ×
    question × model with a 1–5 representation rating and the participant's ``cluster_kmeans``
    (and ``votes``); one row lacks its rating."""
    rows = []
    ratings = {("p1", 0): (5, 2), ("p2", 0): (4, 2), ("p3", 1): (2, 5), ("p4", 1): (3, 4)}
    for (person, cluster), (a, b) in ratings.items():
        for model, r in (("gpt-4o", a), ("llama-3-70b", b)):
            rows.append({"user_id": person, "question": "Should voting be compulsory?",
                         "model": model, "model_response": f"{model}: ...",
                         "representation_rating": float(r), "cluster_kmeans": cluster,
                         "votes": [1, -1, 0], "freeresponse": "my view"})
    rows.append({**rows[0], "user_id": "p5", "representation_rating": None})
    path = root / "data" / "prolific_with_clusters_kmeans_merged_public.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return root
