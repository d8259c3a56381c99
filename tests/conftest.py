"""Shared test set-up. Fixtures live in tests/plugins/, one module per concern."""

pytest_plugins = ["tests.plugins.broker", "tests.plugins.bundle", "tests.plugins.web"]
