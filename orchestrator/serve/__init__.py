"""Serving: terminal chat, an OpenAI-compatible API server and a web chat page."""
