"""The query service: re-alignment queries from the score cache alone, its HTTP front and
its Ray Serve deployment.
"""
