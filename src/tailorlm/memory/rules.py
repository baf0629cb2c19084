"""Deterministic reading of what the user said: clauses, first-person facts, forget requests.

The rules are anchored at the start of a clause and need a first-person subject ("I live
in", "my daughter is", "I'm vegetarian"), so they are precise rather than complete:
"If I lived in Paris" or "do you know where I live?" yield nothing. They serve three
roles: the fallback when a model's output is unusable, the first pass of the constrained
extractor (the model only sees clauses the rules cannot read), and the only reader of
forget requests, which must never depend on a 135M model's mood.

Not here: English beyond common first-person patterns; other languages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tailorlm.memory.schema import Candidate, make_candidate

__all__ = ["Clause", "ForgetRequest", "durable_first_person", "parse_clause", "parse_forget", "split_clauses"]

_F = re.IGNORECASE
_LEAD = (
    # a short announcement before the statement: "Big news:", "Quick update -", "Guess what,"
    r"(?:(?:big\s+|some\s+|good\s+|quick\s+|small\s+|an?\s+)?(?:news|update|fyi|note|heads\s+up)\s*(?::|[-–—]|,)\s*"
    r"|guess\s+what[,:!]?\s+)?"
    r"(?:(?:and|but|so|also|well|oh|ok|okay|yes|yeah|no|hi|hello|hey|actually|btw|by\s+the\s+way|anyway|fyi"
    r"|these\s+days|nowadays|lately|recently|now|currently|since\s+then)[,\s]+)*"
)
_ADV = r"(?:(?:now|currently|actually|still|also|really|just|recently|finally|mostly|already|totally|absolutely)\s+)*"
_I = r"i\s+" + _ADV
_IM = r"(?:i'm|i\s+am|im)\s+" + _ADV
# "we" statements about where the user lives count for the user too ("We moved to Berlin")
_WE = r"we\s+" + _ADV
_WERE = r"(?:we're|we\s+are)\s+" + _ADV
_NOT = r"(?:don't|do\s+not|no\s+longer|never)\s+"
_DIET = r"vegetarian|vegan|pescatarian|pescetarian|flexitarian|keto|paleo|omnivore|carnivore"
_PET = r"dogs?|cats?|pupp(?:y|ies)|kittens?|rabbits?|hamsters?|parrots?|birds?|fish|horses?|turtles?|snakes?|lizards?"
_REL = (
    r"wife|husband|partner|spouse|boyfriend|girlfriend|fiancee?|son|daughter|kid|child|baby|mom|mother|mum|dad|"
    r"father|brother|sister|grandmother|grandfather|grandma|grandpa|aunt|uncle|cousin|niece|nephew|twin"
)
_JOB = re.compile(
    r"nurse|doctor|chef|cook|teacher|lawyer|engineer|developer|programmer|designer|student|pilot|plumber|electrician"
    r"|farmer|journalist|writer|artist|musician|accountant|pharmacist|dentist|architect|scientist|researcher|professor"
    r"|librarian|firefighter|paramedic|cashier|barista|waiter|waitress|carpenter|mechanic|consultant|manager|analyst"
    r"|therapist|surgeon|veterinarian|vet|photographer|translator|secretary|clerk|driver|soldier|officer|salesperson"
)
# Values that point at the conversation, not at the world ("I love it", "I like that idea").
_DEICTIC = {"it", "that", "this", "you", "them", "those", "these", "him", "her", "your", "yours", "what", "how", "so"}
# Cut a captured value before time phrases and trailing chatter: "Paris last year, so..." -> "Paris".
_TRIM = re.compile(
    r"\s*(?:[,;(]|\s-\s|\b(?:and\s+i|but|because|since|so|though|although|too|as\s+well|anymore|any\s+more"
    r"|now|nowadays|originally|by\s+birth|these\s+days|currently|recently|lately|at\s+the\s+moment|right\s+now"
    r"|a\s+lot|very\s+much|so\s+much|as\s+an?|last\s+\w+|this\s+\w+|next\s+\w+"
    r"|for\s+(?:a|the|about|over|almost|\d+|two|three|several|many|some|years|months|ages)\b"
    r"|(?:a\s+few\s+|\d+\s+|two\s+|three\s+|many\s+)?\w+\s+ago|ago|with\s+my"
    r"|in\s+(?:\d|19|20)\d*"
    r"|(?:in|since|back\s+in|early\s+in|late\s+in)\s+(?:january|february|march|april|may|june|july|august"
    r"|september|october|november|december|spring|summer|autumn|fall|winter))\b).*$",
    _F,
)


@dataclass(frozen=True)
class Clause:
    """One statement of the user: a sentence or a part joined by "and I", "but my", ", I"."""

    text: str
    question: bool = False


@dataclass(frozen=True)
class ForgetRequest:
    """What the user asked to forget: every fact, facts of some keys, or facts matching text."""

    said: str
    everything: bool = False
    keys: tuple[str, ...] = ()
    text: str = ""


def split_clauses(texts: Iterable[str]) -> list[Clause]:
    """Sentences of the user's messages, split again where a new first-person statement starts.

    Example:
        >>> [c.text for c in split_clauses(["I live in Lyon and I'm vegetarian. Any tips?"])]
        ['I live in Lyon', "I'm vegetarian", 'Any tips']
    """
    out: list[Clause] = []
    for text in texts:
        text = text.replace("’", "'")
        for sent in re.split(r"(?<=[.!?])\s+|\n+|;", text):
            sent = sent.strip()
            if not sent:
                continue
            parts = re.split(
                r",?\s+(?:and|but|so|because|although|though|while|plus)\s+(?=(?:i|i'm|i've|im|my)\b)"
                r"|,\s*(?=(?:i|i'm|i've|im|my)\s)",
                sent,
                flags=_F,
            )
            parts = [p.strip(" .!,") for p in parts if p and p.strip(" .!,?")]
            for i, part in enumerate(parts):
                question = part.endswith("?") or (i == len(parts) - 1 and sent.endswith("?"))
                out.append(Clause(part.rstrip("?").strip(), question))
    return out


def _trim(v: str, max_words: int = 8) -> str:
    v = _TRIM.sub("", v).strip(" .!,\"'")
    words = v.split()
    return " ".join(words[:max_words])


def _items(v: str) -> list[str]:
    """Split a list value: "jazz and blues" -> ["jazz", "blues"]."""
    return [p.strip() for p in re.split(r",\s*|\s+(?:and|or|&)\s+", v) if p.strip()]


def _ok(v: str) -> bool:
    first = v.split()[0].lower() if v.split() else ""
    return bool(v) and first not in _DEICTIC


Builder = Callable[[re.Match[str], str], list[Candidate | None]]


def _simple(key: str, *, negated: bool = False, max_words: int = 6, split: bool = False) -> Builder:
    def build(m: re.Match[str], said: str) -> list[Candidate | None]:
        v = _trim(m.group("v"), max_words)
        if not _ok(v):
            return []
        values = _items(v) if split else [v]
        return [make_candidate(key, x, said=said, extractor="rules", negated=negated) for x in values if _ok(x)]

    return build


def _name(m: re.Match[str], said: str) -> list[Candidate | None]:
    words = re.findall(r"[^\W\d_][\w'-]*", m.group("v"))[:3]
    stop = {"and", "but", "by", "from", "i", "im", "i'm", "nice", "here", "not", "so", "back", "later", "at", "when"}
    kept: list[str] = []
    for w in words:
        if w.lower() in stop:
            break
        kept.append(w)
    return [make_candidate("name", " ".join(kept), said=said, extractor="rules")] if kept else []


_NOT_NAMES = re.compile(  # capitalized words after "I'm" that are not names
    r".*(?:ish|ese)|American|Canadian|Mexican|Brazilian|Argentinian|Colombian|Peruvian|Chilean|Cuban|German|Austrian"
    r"|Italian|Russian|Ukrainian|Belgian|Hungarian|Norwegian|Indian|Pakistani|Iranian|Israeli|Korean|Australian"
    r"|Nigerian|Kenyan|Egyptian|Moroccan|Greek|Thai|Swiss|Dutch|French|Czech|Muslim|Hindu|Jewish|Sikh|Christian"
    r"|Catholic|Protestant|Buddhist|Atheist|Fine|Good|Okay|Back|Here|Sorry|Ready|Done|Just|Not|So|Very|Really|Also"
)


def _introduced(m: re.Match[str], said: str) -> list[Candidate | None]:
    """ "I'm Tom": a capitalized word after "I'm" is a name, unless it is a nationality or a mood."""
    v = m.group("v")
    return [] if _NOT_NAMES.fullmatch(v.split()[0]) else [make_candidate("name", v, said=said, extractor="rules")]


def _born(m: re.Match[str], said: str) -> list[Candidate | None]:
    v = _trim(m.group("v"), 5)
    year = re.fullmatch(r"(?:in\s+)?(1[89]\d\d|20\d\d)", v)
    key = "birth_year" if year else "birthplace"
    return [make_candidate(key, year.group(1) if year else v, said=said, extractor="rules")] if _ok(v) else []


def _job(m: re.Match[str], said: str) -> list[Candidate | None]:
    v = _trim(re.split(r"\s+(?:at|for|in|of|with)\s+", m.group("v"), maxsplit=1)[0], 4)
    head = v.split()[-1].lower() if v.split() else ""
    if _JOB.fullmatch(head) or (len(head) > 4 and head.endswith(("er", "or", "ist", "ian", "ant", "ent"))):
        return [make_candidate("job", v, said=said, extractor="rules")]
    return []


def _family_is(m: re.Match[str], said: str) -> list[Candidate | None]:
    rel, v = m.group("rel").lower(), m.group("v")
    if age := re.fullmatch(r"(\d{1,3})(?:\s*(?:years?|yrs?)(?:\s+old)?)?", _trim(v, 4)):
        return [make_candidate(f"family:{rel}:age", age.group(1), said=said, extractor="rules")]
    if name := re.match(r"(?:called|named)\s+([^\W\d_][\w'-]*)", v, _F):
        return [make_candidate(f"family:{rel}:name", name.group(1), said=said, extractor="rules")]
    return [make_candidate(f"family:{rel}", _trim(v), said=said, extractor="rules")] if _ok(_trim(v)) else []


def _family_name(m: re.Match[str], said: str) -> list[Candidate | None]:
    name = re.match(r"[^\W\d_][\w'-]*", m.group("v"))
    rel = m.group("rel").lower()
    return [make_candidate(f"family:{rel}:name", name.group(), said=said, extractor="rules")] if name else []


def _favorite(m: re.Match[str], said: str) -> list[Candidate | None]:
    what = "-".join(m.group("what").lower().split())
    v = _trim(m.group("v"), 6)
    return [make_candidate(f"favorite:{what}", v, said=said, extractor="rules")] if _ok(v) else []


def _pet_builder(*, negated: bool) -> Builder:
    def build(m: re.Match[str], said: str) -> list[Candidate | None]:
        animal = re.search(_PET, m.group("v"), _F)
        word = animal.group().lower() if animal else "pet"
        word = {"puppy": "dog", "puppies": "dog", "kitten": "cat", "kittens": "cat"}.get(word, word)
        word = word[:-1] if word.endswith("s") else word
        return [make_candidate(f"pet:{word}", _trim(m.group("v")), said=said, extractor="rules", negated=negated)]

    return build


def _children(m: re.Match[str], said: str) -> list[Candidate | None]:
    n = m.group("n").lower()
    words = {"no": "0", "one": "1", "a": "1", "an": "1", "two": "2", "three": "3", "four": "4", "five": "5"}
    count = words.get(n, n)
    return [make_candidate("family:children", f"{count} children", said=said, extractor="rules")]


# (pattern after the lead-in words, builder); the first pattern that matches the whole clause wins.
_RULES: list[tuple[str, Builder]] = [
    (rf"(?:my\s+name\s+is|my\s+name's|{_IM}(?:called|named)|call\s+me|people\s+call\s+me)\s+(?P<v>.+)", _name),
    (r"(?:i'm|i\s+am|im)\s+(?-i:(?P<v>[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?))", _introduced),
    (rf"{_IM}(?P<v>\d{{1,3}})(?:\s*(?:years?|yrs?)(?:\s+old|\s+of\s+age)?|\s*y/?o)?", _simple("age")),
    (r"(?:i\s+(?:just\s+)?turned|my\s+age\s+is)\s+(?P<v>\d{1,3}).*", _simple("age")),
    (r"i\s+was\s+born\s+(?:and\s+raised\s+)?(?:in\s+)?(?P<v>.+)", _born),
    (
        rf"(?:{_IM}(?:originally\s+)?from|i\s+(?:originally\s+)?come\s+from|i\s+grew\s+up\s+in)\s+(?P<v>.+)",
        _simple("hometown", max_words=5),
    ),
    (
        rf"(?:{_I}(?:live|reside|stay)|{_WE}(?:live|reside)|(?:{_IM}|{_WERE})(?:living|based|staying))\s+in\s+(?P<v>.+)",
        _simple("location", max_words=5),
    ),
    (
        rf"(?:{_I}(?:have\s+)?|i've\s+{_ADV}|{_WE}(?:have\s+)?|we've\s+{_ADV})(?:moved|relocated)\s+(?:back\s+)?to\s+(?P<v>.+)",
        _simple("location", max_words=5),
    ),
    (r"my\s+(?:home|city|home\s*town)\s+is\s+(?:now\s+)?(?P<v>.+)", _simple("location", max_words=5)),
    (rf"{_I}{_NOT}live\s+in\s+(?P<v>.+)", _simple("location", negated=True, max_words=5)),
    (rf"(?:{_I}work|{_IM}(?:working|employed))\s+(?:at|for|by)\s+(?P<v>.+)", _simple("employer", max_words=5)),
    (rf"{_I}{_NOT}work\s+(?:at|for)\s+(?P<v>.+)", _simple("employer", negated=True, max_words=5)),
    (rf"(?:{_I}work|{_IM}(?:working|employed))\s+as\s+(?P<v>.+)", _job),
    (r"my\s+(?:job|profession|occupation)\s+is\s+(?P<v>.+)", _job),
    (rf"{_IM}(?:not|no\s+longer)\s+(?:a\s+|an\s+)?(?P<v>{_DIET})\b.*", _simple("diet", negated=True)),
    (
        rf"(?:{_IM}(?:a\s+|an\s+)?(?:strict\s+)?|{_I}(?:eat|follow|went|became|have\s+become|have\s+gone)\s+(?:a\s+)?)"
        rf"(?P<v>{_DIET})(?:\s+diet)?\b.*",
        _simple("diet"),
    ),
    (rf"{_IM}(?:very\s+|severely\s+|highly\s+)?allergic\s+to\s+(?P<v>.+)", _simple("allergy", split=True)),
    (rf"(?:{_I}(?:study|major\s+in)|{_IM}(?:studying|majoring\s+in))\s+(?P<v>.+)", _simple("studies", max_words=5)),
    (rf"{_I}speak\s+(?P<v>.+)", _simple("speaks", split=True)),
    (rf"{_IM}(?P<v>married|single|divorced|engaged|widowed)\b.*", _simple("relationship")),
    (r"my\s+favou?rite\s+(?P<what>\w+(?:\s+\w+)?)\s+is\s+(?P<v>.+)", _favorite),
    (rf"my\s+(?P<rel>{_REL})(?:'s)?\s+name\s+is\s+(?P<v>.+)", _family_name),
    (rf"my\s+(?P<rel>{_REL})(?:'s|\s+is)\s+(?P<v>.+)", _family_is),
    (r"i\s+have\s+(?P<n>no|one|two|three|four|five|\d+)\s+(?:kids|children)\b.*", _children),
    (rf"i\s+(?:have|'ve\s+got)\s+(?P<v>(?:a|an|one)\s+(?:{_REL}))\b.*", _simple("family")),
    (
        rf"{_I}(?:have|own|'ve\s+got|have\s+got)\s+(?P<v>(?:a|an|one|two|three|\d+)\s+(?:\w+\s+)?(?:{_PET})\b.*)",
        _pet_builder(negated=False),
    ),
    (rf"{_I}{_NOT}(?:have|own)\s+(?P<v>(?:a|an|any)\s+(?:\w+\s+)?(?:{_PET})\b.*)", _pet_builder(negated=True)),
    (
        rf"(?:{_I}{_NOT}(?:really\s+)?(?:like|love|enjoy)"
        rf"|{_I}(?:hate|dislike|detest|loathe|can't\s+stand|cannot\s+stand)"
        rf"|{_IM}(?:not|no\s+longer)\s+(?:really\s+)?(?:into|a\s+fan\s+of|fond\s+of))\s+(?P<v>.+)",
        _simple("likes", negated=True, split=True),
    ),
    (rf"{_I}{_NOT}play\s+(?P<v>.+)", _simple("plays", negated=True)),
    (
        rf"(?:{_I}(?:really\s+)?(?:like|love|enjoy|adore)|{_IM}(?:really\s+|totally\s+)?(?:into|a\s+(?:big\s+|huge\s+)?"
        rf"fan\s+of|fond\s+of|passionate\s+about|obsessed\s+with))\s+(?:to\s+)?(?P<v>.+)",
        _simple("likes", split=True),
    ),
    (rf"{_I}play\s+(?:the\s+)?(?P<v>.+)", _simple("plays")),
    (rf"{_IM}(?:a|an)\s+(?P<v>.+)", _job),
]
_COMPILED = [(re.compile(_LEAD + pattern, _F), build) for pattern, build in _RULES]


def parse_clause(clause: Clause) -> list[Candidate] | None:
    """Facts in one clause by the rules; None when no rule yields a fact from it.

    Example:
        >>> [(c.key, c.value) for c in parse_clause(Clause("I moved to Paris last year"))]
        [('location', 'Paris')]
    """
    if clause.question:
        return None
    for pattern, build in _COMPILED:
        m = pattern.fullmatch(clause.text)
        if m is not None and (found := [c for c in build(m, clause.text) if c is not None]):
            return found
    return None


_FIRST_PERSON = re.compile(_LEAD + r"(?:i|i'm|im|i've|my)\b", _F)
# Intentions, moods, hypotheticals and talk about the conversation: not durable facts about the user.
_NOT_DURABLE = re.compile(
    r"\b(?:think|thought|guess|wonder|wondering|want|wanted|wish|hope|plan|planning|might|maybe|perhaps|would"
    r"|will|'ll|'d|going\s+to|gonna|need|needed|should|could|can|today|tonight|tomorrow|yesterday|morning"
    r"|right\s+now|feel|feeling|tired|hungry|sorry|thanks|thank|agree|mean|see|understand|know|remember|forgot"
    r"|ask|asked|said|say|told|question|help|was|were|used\s+to|if|when|whether|try|trying|looking\s+for)\b",
    _F,
)


def durable_first_person(clause: Clause) -> bool:
    """Worth showing the model: a statement by the user about themself that could stay true."""
    return (
        not clause.question
        and bool(_FIRST_PERSON.match(clause.text))
        and len(clause.text.split()) >= 3
        and not _NOT_DURABLE.search(clause.text)
        and clause.text.split()[-1].lower().strip(".,!") not in _DEICTIC
    )


_FORGET = re.compile(
    _LEAD + r"(?:(?:please|can\s+you|could\s+you|would\s+you|will\s+you|i\s+want\s+you\s+to|i'd\s+like\s+you\s+to)\s+)*"
    r"(?:please\s+)?(?:forget|delete|erase|remove|drop|stop\s+remembering|don't\s+remember|do\s+not\s+remember)"
    r"\s+(?P<what>.+)",
    _F,
)
_EVERYTHING = re.compile(
    r"(?:everything|all)(?:\s+(?:about|you\s+know\s+about|you\s+know\s+of|on)\s+me)?|everything\s+you\s+know"
    r"|all\s+(?:my\s+|of\s+my\s+)?(?:data|facts|memories|information|info)|(?:all\s+)?my\s+(?:data|facts|memories)",
    _F,
)
_KEY_PHRASES: list[tuple[str, tuple[str, ...]]] = [
    (
        r"where\s+i\s+(?:live|am\s+living|reside|moved\s+to|am\s+based|stay)|my\s+(?:location|address|city|home)",
        ("location",),
    ),
    (
        r"where\s+i(?:'m|\s+am)\s+from|where\s+i\s+(?:come\s+from|grew\s+up)|my\s+home\s*town|where\s+i\s+was\s+born",
        ("hometown", "birthplace"),
    ),
    (r"my\s+name|what\s+i(?:'m|\s+am)\s+called", ("name",)),
    (r"my\s+age|how\s+old\s+i\s+am|my\s+birthday|when\s+i\s+was\s+born", ("age", "birth_year")),
    (
        r"my\s+(?:job|work|profession|occupation|employer)|what\s+i\s+do(?:\s+for\s+(?:a\s+)?living)?|where\s+i\s+work",
        ("job", "employer"),
    ),
    (r"my\s+diet|what\s+i\s+(?:eat|don't\s+eat)", ("diet",)),
    (r"my\s+allerg(?:y|ies)", ("allergy",)),
    (r"my\s+(?:pets?|dogs?|cats?)", ("pet",)),
    (r"my\s+(?:kids|children|family)", ("family",)),
]
_IGNORED = {"it", "that", "this", "about it", "about that", "about this", "everything i said", "what i said"}


def parse_forget(clause: Clause) -> ForgetRequest | None:
    """A request to forget, in a clause; None if the clause asks nothing of the kind.

    "forget it" is how people say "never mind", so a target that is only a pronoun is not
    a request. Questions count: "can you forget where I live?" is a request.

    Example:
        >>> parse_forget(Clause("Please forget where I live", False)).keys
        ('location',)
    """
    m = _FORGET.fullmatch(clause.text)
    if m is None:
        return None
    what = re.sub(
        r"^(?:(?:about|that|the\s+fact\s+that|what\s+i\s+(?:said|told\s+you)\s+about|please)\s+)+",
        "",
        m.group("what"),
        flags=_F,
    )
    what = re.sub(r"\s+(?:please|from\s+(?:your|the)\s+memory|thanks|thank\s+you)$", "", what, flags=_F).strip(" .!,")
    if not what or what.lower() in _IGNORED:
        return None
    if _EVERYTHING.fullmatch(what):
        return ForgetRequest(said=clause.text, everything=True)
    return ForgetRequest(said=clause.text, keys=keys_for_phrase(what), text=what)


def keys_for_phrase(what: str) -> tuple[str, ...]:
    """Fact keys named by a phrase ("where I live" -> location; "my daughter" -> family:daughter)."""
    if rel := re.fullmatch(rf"my\s+(?P<rel>{_REL})s?", what.strip(), _F):
        return (f"family:{rel.group('rel').lower()}",)
    for pattern, keys in _KEY_PHRASES:
        if re.fullmatch(pattern, what.strip(), _F):
            return keys
    return ()
