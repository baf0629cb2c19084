"""Streaming dataset loaders: public formats -> records and task examples in the store.

>>> from tailorlm.data import Store
>>> from tailorlm.data.loaders import load_dataset
>>> store = Store("sqlite://")
>>> report = load_dataset(store, "amazon", "reviews.json.gz")  # doctest: +SKIP

Every loader streams its input (plain or gzip, told apart by magic bytes), raises
:class:`LoadError` naming file, line and field for malformed input, and stores
user/item ids as ``f"{namespace}:{raw_id}"`` (``namespace=""`` keeps raw ids).
:func:`load_dataset` runs one load as one store transaction.
"""

from tailorlm.data.loaders.amazon import AmazonReviewsLoader
from tailorlm.data.loaders.base import (
    ByteTracker,
    Loader,
    LoadError,
    LoadReport,
    count_lines,
    iter_csv,
    iter_json_array,
    open_binary,
    open_text,
    parse_json_line,
)
from tailorlm.data.loaders.generic import CsvLoader, JsonlLoader
from tailorlm.data.loaders.lamp import LaMPLoader
from tailorlm.data.loaders.locomo import LoCoMoLoader
from tailorlm.data.loaders.movielens import MovieLensLoader
from tailorlm.data.loaders.personachat import PersonaChatLoader
from tailorlm.data.loaders.popquorn import PopquornLoader
from tailorlm.data.loaders.registry import LOADERS, detect_format, load_dataset, make_loader

__all__ = [
    "LOADERS",
    "AmazonReviewsLoader",
    "ByteTracker",
    "CsvLoader",
    "JsonlLoader",
    "LaMPLoader",
    "LoCoMoLoader",
    "LoadError",
    "LoadReport",
    "Loader",
    "MovieLensLoader",
    "PersonaChatLoader",
    "PopquornLoader",
    "count_lines",
    "detect_format",
    "iter_csv",
    "iter_json_array",
    "load_dataset",
    "make_loader",
    "open_binary",
    "open_text",
    "parse_json_line",
]
