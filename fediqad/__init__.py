"""fediqad: fediqad."""
