"""Small hand-worked inputs of each dataset format, shared by the loader tests.

Not a test module: ``test_loaders_formats`` checks exactly which records each of
these becomes; ``test_loaders_registry`` and ``test_loaders_io`` reuse them as
realistic files. LaMP's samples live with their tests (``test_loaders_lamp``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

__all__ = [
    "AMAZON_ROWS",
    "GL_DATA",
    "GL_GENRE",
    "GL_ITEM",
    "GL_USER",
    "PERSONACHAT",
    "POPQUORN",
    "RB_INTER",
    "RB_ITEM",
    "RB_USER",
    "grouplens",
    "jsonl",
    "recbole",
    "write",
]


def write(path: Path, text: str | bytes, *, gz: bool = False) -> Path:
    """Write ``text`` (UTF-8 when a str) to ``path``, gzipped when ``gz``; return ``path``."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# -- Amazon ------------------------------------------------------------------------------

AMAZON_ROWS = [
    {
        "reviewerID": "U1",
        "asin": "A1",
        "reviewerName": "Ann",
        "helpful": [1, 2],
        "reviewText": "Great strings",
        "overall": 5.0,
        "summary": "Love them",
        "unixReviewTime": 1400000000,
        "reviewTime": "05 13, 2014",
    },
    # 2018 layout, no reviewText: kept with text "" (it has a summary), no examples
    {
        "overall": 2.0,
        "verified": True,
        "reviewTime": "05 13, 2014",
        "reviewerID": "U2",
        "asin": "A1",
        "style": {"Color:": " Black"},
        "reviewerName": "Bob",
        "summary": "Meh",
        "unixReviewTime": 1399939200,
        "vote": "1,234",
        "image": ["http://x/1.jpg"],
    },
    # no name, no summary, no unixReviewTime: rating example only, time from reviewTime
    {
        "reviewerID": "U1",
        "asin": "A2",
        "reviewText": "Too bright",
        "overall": 3,
        "reviewTime": "01 02, 2013",
    },
    # a second review of A1 by U1: dropped, the first one is kept
    {
        "reviewerID": "U1",
        "asin": "A1",
        "reviewText": "Changed my mind",
        "overall": 1.0,
        "summary": "No",
    },
]


# -- MovieLens ---------------------------------------------------------------------------

GL_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n"
GL_GENRE = "".join(f"{g}|{i}\n" for i, g in enumerate(["unknown", "Action", "Comedy", "Drama"])) + "\n"
GL_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://imdb/1|0|0|1|0\n"
    "2|Café Society, Le (1996)|01-Jan-1996||http://imdb/2|0|1|0|1\n"
    "3|unknown||||1|0|0|0\n"
)
GL_DATA = "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t888550871\n"

RB_USER = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n" + "".join(
    "\t".join(line.split("|")) + "\n" for line in GL_USER.splitlines()
)
RB_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tComedy\n2\tCafé Society, Le\t1996\tAction Drama\n3\tunknown\t\tunknown\n"
)
RB_INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + GL_DATA


def grouplens(folder: Path) -> Path:
    """The GroupLens layout of a tiny MovieLens (u.user, u.genre, u.item in Latin-1, u.data)."""
    write(folder / "u.user", GL_USER)
    write(folder / "u.genre", GL_GENRE)
    write(folder / "u.item", GL_ITEM.encode("latin-1"))
    write(folder / "u.data", GL_DATA)
    return folder


def recbole(folder: Path) -> Path:
    """The same tiny MovieLens in RecBole's atomic-file layout (ml-tiny.user/.item/.inter)."""
    write(folder / "ml-tiny.user", RB_USER)
    write(folder / "ml-tiny.item", RB_ITEM)
    write(folder / "ml-tiny.inter", RB_INTER, gz=True)  # gzip under a plain name
    return folder


# -- Persona-Chat ------------------------------------------------------------------------

PERSONACHAT = (
    "1 your persona: i like cats.\n"
    "2 your persona: i work nights.\n"
    "3 hi , how are you ?\tgood , just fed my cats .\n"
    "4 what do you do ?\ti work nights at a bakery .\t\tyes|no|i work nights at a bakery .\n"
    "1 partner's persona: i am a pilot.\n"
    "2 your persona: i surf.\n"
    "3 __SILENCE__\thello , i surf .\n"
)


# -- POPQUORN ----------------------------------------------------------------------------

POPQUORN = (
    "instance_id,user_id,text,offensiveness,gender,race,age,occupation,education\n"
    '530,0,"Nice riff, would recommend",1.0,Man,White,35-39,Unemployed,High school\n'
    '77,0,"a ""quoted""\nsecond line",4.0,Man,White,35-39,Unemployed,High school\n'
    '530,9,"Nice riff, would recommend",2.0,Woman,,18-24,Student,\n'
)
