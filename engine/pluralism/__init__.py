"""Pluralism beyond steering: juries, welfare, real annotators, distributional and Overton
pluralism, survey opinions, Pareto fronts and the judges they use.
"""
