"""Helpers for tests: subprocess scripts and small utilities."""
