"""Small LaMP-format folders (train + dev questions and outputs) for all seven tasks.

Every profile text carries a marker ``pq<qid>x`` of its own question and every generation
gold a marker ``gold<qid>``, so a test can check that a prompt shows exactly its own
profile and never a gold output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TAGS = ["sci-fi", "comedy", "romance", "action"]


def _question(task: int, qid: int) -> str:
    m = f"Q{qid}"
    return {
        1: f'For an author who has written the paper with the title "{m} graphs", which reference is related? '
        'Just answer with [1] or [2] without explanation. [1]: "graph search" [2]: "protein folding"',
        2: "Which tag does this movie relate to among the following tags? Just answer with the tag name without "
        f"further explanation. tags: [{', '.join(TAGS)}] description: {m} a film about a robot",
        3: "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
        f"without further explanation. review: {m} the strings sound warm",
        4: f"Generate a headline for the following article: {m} markets fell on monday",
        5: f"Generate a title for the following abstract of a paper: {m} we study sparse graphs",
        6: f"Generate a subject for the following email: {m} please send the reports",
        7: f"Paraphrase the following tweet without any explanation before or after it: {m} so tired today",
    }[task]


def _gold(task: int, qid: int) -> str:
    if task == 1:
        return "[1]" if qid % 2 else "[2]"
    if task == 2:
        return TAGS[qid % len(TAGS)]
    if task == 3:
        return str(1 + qid % 5)
    return f"gold{qid} words here"


def _profile(task: int, qid: int) -> list[dict[str, Any]]:
    items = []
    for j in range(3):
        text = f"pq{qid}x item {j} about graphs strings markets reports films robot today"
        item: dict[str, Any] = {"id": f"{qid}-{j}"}
        if task in (1, 5):
            item |= {"title": f"pq{qid}x title {j}", "abstract": text}
        elif task == 2:
            item |= {"description": text, "tag": TAGS[(qid + j) % len(TAGS)]}
        elif task == 3:
            item |= {"text": text, "score": str(1 + (qid + j) % 5)}
        elif task in (4, 6):
            item |= {"text": text, "title": f"pq{qid}x headline {j}"}
        else:
            item |= {"text": text}
        if j == 0:
            item["date"] = "2016-05-17"
        items.append(item)
    items.append(
        {**items[-1], "id": f"{qid}-empty", **{k: "A+" for k in items[-1] if k in ("text", "abstract", "description")}}
    )
    return items


def write_lamp(root: Path, task: int, *, n_train: int = 6, n_dev: int = 4) -> Path:
    """``root/LaMP_<task>/`` with train and dev files; question ids are unique across both."""
    folder = root / f"LaMP_{task}"
    folder.mkdir(parents=True, exist_ok=True)
    qid = 0
    for split, n in (("train", n_train), ("dev", n_dev)):
        questions, golds = [], []
        for _ in range(n):
            questions.append({"id": str(qid), "input": _question(task, qid), "profile": _profile(task, qid)})
            golds.append({"id": str(qid), "output": _gold(task, qid)})
            qid += 1
        (folder / f"{split}_questions.json").write_text(json.dumps(questions))
        (folder / f"{split}_outputs.json").write_text(json.dumps({"task": f"LaMP_{task}", "golds": golds}))
    return folder
