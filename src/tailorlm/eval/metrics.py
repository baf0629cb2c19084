"""Metrics from maintained libraries, with the LaMP conventions.

ROUGE via ``rouge-score`` (stemming on, as LaMP), BLEU via ``sacrebleu``, METEOR via
``nltk`` (WordNet from Debian's ``wordnet-base``, never downloaded at run time),
accuracy / macro-F1 via scikit-learn, MAE / RMSE with numpy, SQuAD's answer token F1
(written out here: no installed library ships it) and evidence recall for memory QA, and the top-k ranking
metrics (NDCG, hit rate, MRR, recall, precision: RecBole's names and definitions) via
Cornac. This is the only home of the ranking metrics: the MovieLens anchors
(:mod:`tailorlm.eval.recsys`) score their lists here too, so a ranking number means the
same thing wherever it is reported.
An unparsable rating is scored as the label farthest from gold (LaMP), and counted.

Each family also has a ``*_per_example`` form: the per-example values the bootstrap
resamples (see :mod:`tailorlm.eval.stats`), so a table's point estimate and its
confidence interval always come from the same numbers.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tailorlm.tasks import farthest_rating

__all__ = [
    "METRIC_DIRECTION",
    "WordNetMissing",
    "classification_scores",
    "evidence_recall",
    "generation_scores",
    "meteor_per_example",
    "normalize_answer",
    "ranking_metrics",
    "ranking_per_example",
    "ranking_scores",
    "rating_errors",
    "rating_scores",
    "reciprocal_rank",
    "rouge_per_example",
    "token_f1",
]

# +1: higher is better; -1: lower is better (used by plots, gains and the paired test's sign).
METRIC_DIRECTION: dict[str, int] = {
    "mae": -1,
    "rmse": -1,
    "unparsable": -1,
    "accuracy": 1,
    "macro_f1": 1,
    "rouge1": 1,
    "rougeL": 1,
    "bleu": 1,
    "meteor": 1,
    "ndcg@10": 1,
    "hit@10": 1,
    "mrr": 1,
    "f1": 1,
    "evidence_recall": 1,
    "judge": 1,
}


def rouge_per_example(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    """Per-example ROUGE-1 and ROUGE-L F-measures (for bootstrap and paired tests)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    r1, rl = [], []
    for p, r in zip(predictions, references, strict=True):
        s = scorer.score(r, p)
        r1.append(s["rouge1"].fmeasure)
        rl.append(s["rougeL"].fmeasure)
    return {"rouge1": r1, "rougeL": rl}


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles, single spaces.

    Example:
        >>> normalize_answer("The 7th of May, 2023!")
        '7th of may 2023'
    """
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1 between an answer and the reference, after :func:`normalize_answer`.

    Tokens are counted with repeats (a bag of words); when either side normalizes to
    nothing the score is 1.0 if both do, else 0.0 (SQuAD's convention).

    Example: "on 7 May 2023" vs "7 May 2023": 3 common tokens, precision 3/4, recall 3/3,
    F1 = 2 * 0.75 * 1 / 1.75:
        >>> round(token_f1("on 7 May 2023", "7 May 2023"), 4)
        0.8571
    """
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def evidence_recall(evidence: Sequence[str], retrieved: Sequence[str]) -> float | None:
    """Share of the evidence ids among the retrieved ids (recall@k, k = how many were retrieved).

    None when there is no evidence: recall is undefined there, and counting such a
    question as 0 or 1 would move the mean by what the annotators left out.

    Example:
        >>> evidence_recall(["D1:3", "D2:8"], ["D2:8", "D5:1", "D1:4"]), evidence_recall([], ["D1:1"])
        (0.5, None)
    """
    wanted = set(evidence)
    if not wanted:
        return None
    return len(wanted & set(retrieved)) / len(wanted)


class WordNetMissing(RuntimeError):
    """METEOR needs the WordNet database files, which are not on this machine."""


_LEXNAMES = (  # noqa: SIM905 (one line of the lexnames(5WN) table reads better than 45 list items)
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_LEX_POS = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


@functools.cache
def _wordnet() -> Any:
    """nltk's WordNet reader over a local WordNet 3.0 database.

    Looks in ``$TAILORLM_WORDNET``, then Debian's ``/usr/share/wordnet``. Debian ships
    the database without the ``lexnames`` index nltk also reads (the 45 fixed
    lexicographer file names of WordNet 3.0, documented in lexnames(5WN)), so a copy
    plus that file is assembled once in the cache (a copy: nltk refuses symlinks that
    resolve outside the corpus root).
    """
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    from tailorlm.settings import default_cache_dir

    candidates = [os.environ.get("TAILORLM_WORDNET"), "/usr/share/wordnet"]
    src = next((Path(c) for c in candidates if c and (Path(c) / "data.noun").exists()), None)
    if src is None:
        raise WordNetMissing(
            "METEOR needs WordNet 3.0: install Debian's wordnet-base (apt-get install wordnet-base) "
            "or set TAILORLM_WORDNET to a folder holding data.noun, index.noun, ..."
        )
    root = src
    if not (src / "lexnames").exists():
        root = default_cache_dir() / "wordnet"
        root.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file() and not (root / f.name).exists():
                shutil.copyfile(f, root / f"{f.name}.tmp")
                (root / f"{f.name}.tmp").replace(root / f.name)
        lex = root / "lexnames"
        if not lex.exists():
            tmp = root / "lexnames.tmp"
            tmp.write_text("".join(f"{i:02d}\t{n}\t{_LEX_POS[n.split('.')[0]]}\n" for i, n in enumerate(_LEXNAMES)))
            tmp.replace(lex)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))  # nltk only reads corpora under its data paths
    import warnings

    class EnglishWordNet(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            # Maps synsets to another WordNet release for the multilingual (OMW) data,
            # reading nltk's downloadable copy; METEOR uses English synonyms only.
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not used by METEOR
        return EnglishWordNet(str(root), None)


def meteor_per_example(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """METEOR (nltk, default parameters) per example, on lower-cased whitespace tokens."""
    from nltk.translate.meteor_score import meteor_score

    wn = _wordnet()
    return [
        float(meteor_score([r.lower().split()], p.lower().split(), wordnet=wn)) if p.strip() and r.strip() else 0.0
        for p, r in zip(predictions, references, strict=True)
    ]


def generation_scores(
    predictions: Sequence[str | None], references: Sequence[str], *, meteor: bool = False
) -> dict[str, float]:
    """Mean ROUGE-1/L, corpus BLEU and (with ``meteor=True``) mean METEOR."""
    import sacrebleu

    preds = [p or "" for p in predictions]
    per = rouge_per_example(preds, references)
    out = {
        "rouge1": float(np.mean(per["rouge1"])) if preds else 0.0,
        "rougeL": float(np.mean(per["rougeL"])) if preds else 0.0,
        "bleu": float(sacrebleu.corpus_bleu(preds, [list(references)]).score) if preds else 0.0,
        "n": len(preds),
    }
    if meteor:
        out["meteor"] = float(np.mean(meteor_per_example(preds, references))) if preds else 0.0
    return out


def rating_errors(
    predictions: Sequence[str | float | None], golds: Sequence[float], *, low: int = 1, high: int = 5
) -> np.ndarray:
    """Signed error per example; an unparsable answer counts as the farthest label (LaMP)."""
    pairs = zip(predictions, golds, strict=True)
    p = [farthest_rating(g, low=low, high=high) if x is None else float(x) for x, g in pairs]
    return np.asarray(p, dtype=float) - np.asarray(golds, dtype=float)


def rating_scores(
    predictions: Sequence[str | float | None], golds: Sequence[float], *, low: int = 1, high: int = 5
) -> dict[str, float]:
    """MAE, RMSE and the unparsable rate; unparsable answers count as the farthest label."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} golds")
    err = rating_errors(predictions, golds, low=low, high=high)
    n = len(golds)
    return {
        "mae": float(np.mean(np.abs(err))) if n else 0.0,
        "rmse": float(np.sqrt(np.mean(err**2))) if n else 0.0,
        "unparsable": sum(p is None for p in predictions) / n if n else 0.0,
        "n": n,
    }


def classification_scores(
    predictions: Sequence[str | None], golds: Sequence[str], *, labels: Sequence[str] = ()
) -> dict[str, float]:
    """Accuracy and macro-F1. ``labels``: the task's label set (LaMP-2's listed tags), so a
    label no gold uses but the system predicts still counts in the macro average (as LaMP's
    evaluation does); default: the labels the golds use."""
    from sklearn.metrics import accuracy_score, f1_score

    p = [x if x is not None else "<unparsable>" for x in predictions]
    label_set = sorted(set(labels) | set(golds)) if labels else sorted(set(golds))
    return {
        "accuracy": float(accuracy_score(golds, p)),
        "macro_f1": float(f1_score(golds, p, average="macro", labels=label_set, zero_division=0)),
        "unparsable": sum(x is None for x in predictions) / max(1, len(p)),
        "n": len(p),
    }


def reciprocal_rank(relevant: Iterable[Any], ranked: Sequence[Any]) -> float:
    """1 / rank of the first relevant item of ``ranked`` (best first), 0.0 if none is ranked.

    Over the whole list this is the uncut MRR; over ``ranked[:k]`` it is RecBole's MRR@k
    (the same value as Cornac's ``MRR``, which refuses a list without a hit).
    """
    rel = set(relevant)
    first = next((n for n, x in enumerate(ranked) if x in rel), None)
    return 0.0 if first is None else 1.0 / (first + 1)


def ranking_metrics(relevant: Sequence[Any], ranked: Sequence[Any], k: int = 10) -> dict[str, float]:
    """RecBole's top-k metrics for one user or query, computed by Cornac's implementations.

    ``relevant``: the user's held-out items; ``ranked``: the recommendation list, best first
    (only its first ``k`` count; ids are expected to be distinct, as in any ranking: a
    repeated relevant id would count twice). NDCG's ideal list has min(len(relevant), k)
    hits; MRR@k is 0 without a hit in the top k.

    Example (derivation in tests/eval/test_recsys.py):
        >>> {m: round(v, 4) for m, v in ranking_metrics(["a", "c"], ["b", "a", "d", "c"], k=3).items()}
        {'ndcg@3': 0.3869, 'hit@3': 1.0, 'mrr@3': 0.5, 'recall@3': 0.5, 'precision@3': 0.3333}
    """
    from cornac.metrics import NDCG, HitRatio, Precision, Recall

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(relevant) == 0:
        raise ValueError("a query has no relevant item (a user without held-out items has no ranking metrics)")
    codes = {x: n for n, x in enumerate(dict.fromkeys([*relevant, *ranked]))}
    gt = np.array([codes[x] for x in dict.fromkeys(relevant)])
    top = np.array([codes[x] for x in list(ranked)[:k]], dtype=int)
    return {
        f"ndcg@{k}": float(NDCG(k=k).compute(gt_pos=gt, pd_rank=top)),
        f"hit@{k}": float(HitRatio(k=k).compute(gt_pos=gt, pd_rank=top)),
        f"mrr@{k}": reciprocal_rank(relevant, list(ranked)[:k]),
        f"recall@{k}": float(Recall(k=k).compute(gt_pos=gt, pd_rank=top)),
        f"precision@{k}": float(Precision(k=k).compute(gt_pos=gt, pd_rank=top)),
    }


def ranking_per_example(
    ranked: Sequence[Sequence[str]], relevant: Sequence[str | Sequence[str]], *, k: int = 10
) -> dict[str, list[float]]:
    """NDCG@k, hit@k (:func:`ranking_metrics`) and the uncut MRR (:func:`reciprocal_rank`) per query.

    ``relevant`` holds one relevant id or a sequence of them per query; relevant ids the
    list missed still count in NDCG's ideal list.
    """
    out: dict[str, list[float]] = {f"ndcg@{k}": [], f"hit@{k}": [], "mrr": []}
    for ids, rel in zip(ranked, relevant, strict=True):
        rel_ids = [rel] if isinstance(rel, str) else list(rel)
        per = ranking_metrics(rel_ids, ids, k=k)
        out[f"ndcg@{k}"].append(per[f"ndcg@{k}"])
        out[f"hit@{k}"].append(per[f"hit@{k}"])
        out["mrr"].append(reciprocal_rank(rel_ids, ids))
    return out


def ranking_scores(
    ranked: Sequence[Sequence[str]], relevant: Sequence[str | Sequence[str]], *, k: int = 10
) -> dict[str, float]:
    """Means of :func:`ranking_per_example`, and ``n`` (the number of queries)."""
    per = ranking_per_example(ranked, relevant, k=k)
    return {name: float(np.mean(v)) if v else 0.0 for name, v in per.items()} | {"n": len(ranked)}
