"""Pytest fixtures that start real redis-server processes (filled in by the layer work)."""
