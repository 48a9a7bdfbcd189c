"""Benchmarks and the field's datasets: loading, synthetic data, levels, targets and target
sets, Arrow tables, and the text similarity that ranks in-context examples.
"""
