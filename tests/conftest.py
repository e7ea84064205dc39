"""Shared fixtures: the fake vendors (served on loopback) and a running gateway.

Gateways and CLI runs are subprocesses started from temporary directories; they import
`proxy` from wherever the package is installed, which need not be this checkout (an
editable install made from another clone). PYTHONPATH makes every one of them run the
code under test."""

import os
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)

pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.anthropic_fixtures", "tests.fakes.azure_fixtures",
                  "tests.fakes.spark_fixtures", "tests.fakes.ernie_fixtures", "tests.fakes.huggingface_fixtures",
                  "tests.fakes.replicate_fixtures", "tests.fakes.qwen_fixtures", "tests.fakes.minimax_fixtures",
                  "tests.fakes.chatglm_fixtures", "tests.fakes.compatible_fixtures",
                  "tests.e2e.harness", "tests.pg", "tests.redis_server"]
