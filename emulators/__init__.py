"""Vendor emulators: local servers that speak each vendor's real wire format.

Each module serves one vendor's API as a Starlette app over a state object that scripts
its answers and records what it saw. `modelport emulate` serves them for users' own
applications, `modelport serve --demo` runs them in-process behind the gateway, and the
test suite drives them with each vendor's official SDK.
"""
