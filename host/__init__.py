"""The host process: HTTP API, loader, CLI."""
