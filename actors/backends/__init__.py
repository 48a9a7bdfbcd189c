"""Backends that answer prompts: OpenAI-compatible HTTP clients, reward-model clients and
vLLM replicas in this process.
"""
