"""Docker deployment tooling behind `fediqad deploy` (container specs as plain data)."""
