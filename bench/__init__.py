"""Benchmarks: scripts that print figures, side by side with the systems users would pick instead."""
