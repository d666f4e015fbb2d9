"""fediqad: shared."""
