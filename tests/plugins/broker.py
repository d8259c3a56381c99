"""Pytest fixtures that start a real mosquitto broker on a free port (written by the device-runtime work)."""
