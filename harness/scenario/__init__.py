"""Scenario description: typed data (`types`) and the TOML loader that validates it."""
