"""Shared fixtures: the fake vendors (served on loopback) and a running gateway."""

pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.anthropic_fixtures", "tests.fakes.azure_fixtures", "tests.e2e.harness"]
