"""Pytest fixtures that convert a tiny real model into a bundle (written by the workstation-pipeline work)."""
