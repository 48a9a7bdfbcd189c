"""Fixtures for the actor tests: the fake OpenAI server, a planted key, a real redis-server."""

from tests.fake_openai import fake_key, fake_server, make_fake_server, redis_url

__all__ = ["fake_key", "fake_server", "make_fake_server", "redis_url"]
