"""modelport's HTTP side: the Starlette app, auth, routing, admin API and CLI."""
