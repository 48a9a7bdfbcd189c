"""The query service: re-alignment queries from the score cache alone (``query.py``), its HTTP
front (``http.py``), its Ray Serve deployment (``ray_serve.py``) and the ``serve`` job that runs
it until told to stop (``job.py``: :class:`ServeConfig`, :func:`serve`).
"""
