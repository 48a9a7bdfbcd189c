"""Ray actors: API clients of OpenAI-compatible endpoints and vLLM replicas."""
