"""Everything pluralign keeps on disk: append-only part stores (scores, choices, generations),
claims, content hashes, the run manifest and atomic file writes.
"""
