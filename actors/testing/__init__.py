"""A fake OpenAI-compatible server for tests and offline demos (loopback only).
"""
