"""fediqad: client."""
