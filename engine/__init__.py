"""The pure core of pluralign: benchmarks, targets, re-alignment, metrics and the score cache.

Depends only on numpy, pyarrow, scipy, scikit-learn, numba and the standard library; never on
ray, vllm, redis or aiohttp (actors and jobs depend on the engine, not the other way round).
"""
