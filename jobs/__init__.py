"""Entry points: the ``pluralign`` command line and the jobs submitted to a Ray cluster."""
