"""LLM-as-judge: pairwise ("which of these two sounds more like this user?", both orders) and
correctness ("does this answer say what the reference says?", for memory QA).

Position bias is large in small judges (they prefer whichever answer comes first, or
second), so every pair is judged twice with the answers swapped; a pair counts as a
win only when both orders agree, otherwise as a tie. Judges that can score choices
(the local model) answer by constrained choice between "A" and "B", never unparsably;
others (any OpenAI-compatible server) answer freely and the first A/B is parsed.

``rouge_agreement`` checks the judge against ROUGE: among the pairs where the judge
gave a decisive verdict and ROUGE-1 against the user's real text differs, how often
they pick the same output. Near 0.5 means the judge is no better than a coin at
recovering what the user actually wrote.

:class:`CorrectnessJudge` grades one answer against the reference answer of a question
(LoCoMo's "LLM judge" accuracy beside token F1, which misses paraphrases such as "May
7th" for "7 May 2023"). It runs on the same generator path as everything else: by
constrained choice between "yes" and "no" when the model can score choices, else by
generation with the first yes/no parsed (no verdict counts as "no").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tailorlm.models.base import ChoiceScorer, GenerationConfig

__all__ = ["CorrectnessJudge", "JudgeVerdict", "PairwiseJudge", "rouge_agreement"]

SYSTEM = "You compare two texts and decide which one was more likely written by a given person."
GRADER_SYSTEM = "You grade answers to questions against the correct answer."


def _scores_choices(generator: Any) -> bool:
    """Whether ``generator`` can score choices; a caching wrapper only can when what it wraps can."""
    inner = getattr(generator, "generator", generator)
    return isinstance(generator, ChoiceScorer) and isinstance(inner, ChoiceScorer)


class CorrectnessJudge:
    """Grade answers against reference answers: 1.0 when the judge says they agree, else 0.0.

    Args:
        generator: the judge model (a Generator; ``score_choices`` is used when it has it).
        snippet_chars: question, reference and answer are each cut to this many characters.

    Example:
        >>> from tailorlm.testing import FakeGenerator
        >>> CorrectnessJudge(FakeGenerator(prefix="")).grade([("When?", "7 May 2023", "")])
        [0.0]
    """

    def __init__(self, generator: Any, *, snippet_chars: int = 300) -> None:
        self.generator = generator
        self.snippet_chars = snippet_chars

    def _messages(self, question: str, reference: str, answer: str) -> list[dict[str, str]]:
        cut = self.snippet_chars
        prompt = (
            f"Question: {question[:cut]}\nCorrect answer: {reference[:cut]}\nGiven answer: {answer[:cut]}\n\n"
            "Does the given answer say the same as the correct answer (the same fact, date or name; "
            "the wording may differ)? Answer yes or no."
        )
        return [{"role": "system", "content": GRADER_SYSTEM}, {"role": "user", "content": prompt}]

    def grade(self, items: Sequence[tuple[str, str, str]], *, batch_size: int = 8) -> list[float]:
        """``items``: (question, reference answer, given answer); an empty answer is 0.0 unasked."""
        out = [0.0] * len(items)
        todo = [i for i, (_, _, answer) in enumerate(items) if answer.strip()]
        for lo in range(0, len(todo), batch_size):
            idx = todo[lo : lo + batch_size]
            batch = [self._messages(*items[i]) for i in idx]
            if _scores_choices(self.generator):
                verdicts = [1.0 if yes >= no else 0.0 for yes, no in self.generator.score_choices(batch, ["yes", "no"])]
            else:
                texts = self.generator.generate(batch, config=GenerationConfig(max_new_tokens=4))
                verdicts = [1.0 if (m := _YES_NO.match(t)) and m.group(1).lower() == "yes" else 0.0 for t in texts]
            for i, v in zip(idx, verdicts, strict=True):
                out[i] = v
        return out


_YES_NO = re.compile(r"\W*(yes|no)\b", re.IGNORECASE)


@dataclass(frozen=True)
class JudgeVerdict:
    winner: str  # "first", "second" or "tie" (the two orders disagreed)
    order_ab: str  # the raw verdict with (first, second) shown as (A, B)
    order_ba: str  # the raw verdict with the outputs swapped

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class PairwiseJudge:
    """Judge pairs of outputs against samples of the user's own writing.

    Args:
        generator: the judge model (a Generator; ``score_choices`` is used when present).
        samples: how many of the user's texts to show (the first ones given).
        snippet_chars: each sample and output is cut to this many characters.
    """

    def __init__(self, generator: Any, *, samples: int = 3, snippet_chars: int = 300) -> None:
        self.generator = generator
        self.samples = samples
        self.snippet_chars = snippet_chars

    def _messages(self, user_texts: Sequence[str], task_input: str, a: str, b: str) -> list[dict[str, str]]:
        cut = self.snippet_chars
        shown = "\n".join(f"- {t[:cut]}" for t in user_texts[: self.samples]) or "- (no samples)"
        prompt = (
            f"Samples of this person's writing:\n{shown}\n\nTask: {task_input[:cut]}\n\n"
            f"Output A: {a[:cut]}\nOutput B: {b[:cut]}\n\n"
            "Which output sounds more like this person wrote it? Answer with A or B."
        )
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]

    def _ask(self, batch: list[list[dict[str, str]]]) -> list[str]:
        if _scores_choices(self.generator):
            scores = self.generator.score_choices(batch, ["A", "B"])
            return ["A" if row[0] >= row[1] else "B" for row in scores]
        texts = self.generator.generate(batch, config=GenerationConfig(max_new_tokens=4))
        out = []
        for t in texts:
            m = re.search(r"\b([AB])\b", t.strip().upper())
            out.append(m.group(1) if m else "?")
        return out

    def compare(
        self, items: Sequence[tuple[Sequence[str], str, str, str]], *, batch_size: int = 8
    ) -> list[JudgeVerdict]:
        """``items``: (user's texts, task input, first output, second output) per pair."""
        verdicts: list[JudgeVerdict] = []
        for i in range(0, len(items), batch_size):
            chunk = items[i : i + batch_size]
            ab = self._ask([self._messages(u, x, a, b) for u, x, a, b in chunk])
            ba = self._ask([self._messages(u, x, b, a) for u, x, a, b in chunk])
            for v1, v2 in zip(ab, ba, strict=True):
                if v1 == "A" and v2 == "B":
                    winner = "first"
                elif v1 == "B" and v2 == "A":
                    winner = "second"
                else:
                    winner = "tie"
                verdicts.append(JudgeVerdict(winner, v1, v2))
        return verdicts


def rouge_agreement(
    verdicts: Sequence[JudgeVerdict], rouge_first: Sequence[float], rouge_second: Sequence[float]
) -> dict[str, Any]:
    """Share of decisive verdicts that pick the output with the higher ROUGE-1 against the user's text."""
    agree = considered = 0
    for v, r1, r2 in zip(verdicts, rouge_first, rouge_second, strict=True):
        if v.winner == "tie" or r1 == r2:
            continue
        considered += 1
        agree += (v.winner == "first") == (r1 > r2)
    n = len(verdicts)
    return {
        "pairs": n,
        "first_wins": sum(v.winner == "first" for v in verdicts),
        "second_wins": sum(v.winner == "second" for v in verdicts),
        "ties": sum(v.winner == "tie" for v in verdicts),
        "position_consistent": sum(v.winner != "tie" for v in verdicts) / n if n else 0.0,
        "rouge_comparable_pairs": considered,
        "agreement_with_rouge": agree / considered if considered else None,
    }


def judge_report(
    report: dict[str, Any], store: Any, judge: PairwiseJudge, *, tasks: Sequence[str] | None = None, pairs: int = 20
) -> dict[str, Any]:
    """Judge every generation row of a suite report against its task's baseline, on common queries.

    The user's writing samples are their own eligible history for that query (the
    same leakage guards as the methods: strictly earlier, never the target).
    """
    from tailorlm.eval.metrics import rouge_per_example
    from tailorlm.personalize import Query
    from tailorlm.personalize.base import eligible_history
    from tailorlm.tasks import get_task

    done = [r for r in report["results"] if not r.get("skipped")]
    out: dict[str, Any] = {"model": getattr(judge.generator, "name", None), "rows": []}
    for task in dict.fromkeys(r["task"] for r in done):
        if get_task(task).kind != "generation" or (tasks and task not in tasks):
            continue
        base = next((r for r in done if r["task"] == task and r.get("baseline")), None)
        if base is None:
            continue
        base_rows = {(x["user_id"], x["example_id"]): x for x in base["rows"]}
        for r in done:
            if r["task"] != task or r is base:
                continue
            common = [x for x in r["rows"] if (x["user_id"], x["example_id"]) in base_rows][:pairs]
            items, golds = [], []
            for x in common:
                user_examples = store.get_examples(task=task, user_id=x["user_id"])
                ex = next(e for e in user_examples if e.example_id == x["example_id"])
                hist = eligible_history(store, x["user_id"], Query.from_example(ex))
                samples = [e.title or e.text for e in hist[-judge.samples :]]
                b = base_rows[(x["user_id"], x["example_id"])]
                items.append((samples, ex.input, str(x.get("raw") or ""), str(b.get("raw") or "")))
                golds.append(ex.target or "")
            if not items:
                continue
            verdicts = judge.compare(items)
            r1 = rouge_per_example([i[2] for i in items], golds)["rouge1"]
            r2 = rouge_per_example([i[3] for i in items], golds)["rouge1"]
            summary = rouge_agreement(verdicts, r1, r2)
            out["rows"].append({"task": task, "method": r["name"], "baseline": base["name"], **summary})
    return out
