"""Shared fixtures: the fake vendors (served on loopback) and a running gateway."""

pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.anthropic_fixtures", "tests.fakes.azure_fixtures", "tests.fakes.spark_fixtures", "tests.fakes.ernie_fixtures", "tests.fakes.huggingface_fixtures", "tests.fakes.replicate_fixtures", "tests.fakes.qwen_fixtures", "tests.fakes.minimax_fixtures", "tests.fakes.chatglm_fixtures", "tests.e2e.harness"]
