"""Helpers every test folder shares: tiny configs and data, the in-process CLI and
Flower Grid, state comparison, and the process registry of the deployment tests."""
