"""Pytest fixtures for the Kubernetes control plane (filled in by the control-plane work)."""
