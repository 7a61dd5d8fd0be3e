"""The web dashboard at /ui: server-rendered pages over the same domain services as the API."""
