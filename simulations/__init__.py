"""fediqad: simulations."""
