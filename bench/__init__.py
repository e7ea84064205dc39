"""The gateway benchmark: `python -m bench` (see bench/README.md).

Never imported by the product or the test suite; it drives `modelport serve` from the
outside, against a fake upstream on loopback, and measures what the gateway adds.
"""
