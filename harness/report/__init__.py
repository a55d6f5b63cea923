"""Compare predictions with observations and render results (text, KTAP, JUnit)."""
