"""The HTTP API: routers and the dependency wiring they share."""
