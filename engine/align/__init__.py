"""Re-alignment and its metrics: the choice rule, the vectorized and compiled paths, the loop
oracle they must equal, per-scenario records and result tables.
"""
