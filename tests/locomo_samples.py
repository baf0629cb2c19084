"""LoCoMo-layout samples the LoCoMo tests write themselves (tests/data and tests/eval share them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_locomo(path: Path, samples: list[dict[str, Any]] | None = None) -> Path:
    """``samples`` (default :func:`locomo_samples`) as an indented JSON array, as the public file is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(locomo_samples() if samples is None else samples, indent=2), encoding="utf-8")
    return path


def locomo_samples() -> list[dict[str, Any]]:
    """Two conversations in LoCoMo's public layout (``locomo10.json``), small enough to check
    by hand: dated sessions, an image turn, questions of every category (one adversarial, one
    without evidence, one with a numeric answer, one whose evidence string holds two ids).
    ``json.dump`` the list to get a LoCoMo file."""
    caroline = [
        ("Caroline", "Hey Mel! I went to the LGBTQ support group yesterday and it was so powerful."),
        ("Melanie", "That sounds great, Caroline! I painted a sunrise by the lake last week."),
        ("Caroline", "I love that. I am researching adoption agencies now."),
        ("Melanie", "Here is my painting."),
    ]
    first = [{"speaker": s, "dia_id": f"D1:{i}", "text": t} for i, (s, t) in enumerate(caroline, 1)]
    first[3] |= {"img_url": ["https://example.org/sunrise.jpg"], "blip_caption": "a photo of a painted sunrise"}
    second = [
        {"speaker": "Melanie", "dia_id": "D2:1", "text": "I took my kids camping at the beach last weekend."},
        {"speaker": "Caroline", "dia_id": "D2:2", "text": "Fun! I gave a talk at a school about my journey."},
    ]
    conv_26 = {
        "speaker_a": "Caroline",
        "speaker_b": "Melanie",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": first,
        "session_2_date_time": "10:37 am on 27 June, 2023",
        "session_2": second,
    }
    qa_26 = [
        {"question": "When did Caroline go to the LGBTQ support group?", "answer": "7 May 2023",
         "evidence": ["D1:1"], "category": 2},
        {"question": "What did Melanie paint?", "answer": "a sunrise", "evidence": ["D1:2", "D1:4"], "category": 4},
        {"question": "What is Caroline researching?", "answer": "adoption agencies", "evidence": ["D1:3"],
         "category": 4},
        {"question": "Where did Melanie take her kids camping?", "answer": "the beach", "evidence": ["D2:1"],
         "category": 1},
        {"question": "What did Caroline paint by the lake?", "adversarial_answer": "a sunrise",
         "evidence": ["D1:2"], "category": 5},
        {"question": "Would Caroline likely work in counseling?", "answer": "Likely yes", "evidence": [],
         "category": 3},
        {"question": "In which year did Melanie paint the sunrise?", "answer": 2023, "evidence": ["D1:2"],
         "category": 2},
    ]  # fmt: skip
    conv_30 = {
        "speaker_a": "Jon",
        "speaker_b": "Gina",
        "session_1_date_time": "2023-01-20T16:04:00",
        "session_1": [
            {"speaker": "Jon", "dia_id": "D1:1", "text": "I lost my job as a banker, so I am opening a dance studio."},
            {"speaker": "Gina", "dia_id": "D1:2", "text": "Wow! I lost my job too and started a clothing store."},
            {"speaker": "Jon", "dia_id": "D1:3", "text": "Dance is my passion, I want to teach it."},
        ],
    }
    qa_30 = [
        {"question": "Why did Jon open a dance studio?", "answer": "he lost his job and dance is his passion",
         "evidence": ["D1:1; D1:3"], "category": 1},
        {"question": "What store did Gina start?", "answer": "a clothing store", "evidence": ["D1:2"], "category": 4},
    ]  # fmt: skip
    return [
        {"qa": qa_26, "conversation": conv_26, "event_summary": {}, "sample_id": "conv-26"},
        {"qa": qa_30, "conversation": conv_30, "observation": {}, "sample_id": "conv-30"},
    ]
