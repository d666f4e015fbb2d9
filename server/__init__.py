"""fediqad: server."""
