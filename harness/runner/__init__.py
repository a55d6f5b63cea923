"""Run scenarios in a guest: execute steps, wait as the model predicts, observe."""
