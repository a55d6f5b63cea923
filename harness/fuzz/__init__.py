"""Differential testing: random module sets and step histories (hypothesis), predicted
by the model and run on real guests, shrunk on the real kernel to a minimal scenario.

`palette` (the modules histories are made of), `histories` (hypothesis strategies,
cutting at refused steps), `judge` (model vs kernel, or model vs model), `search`
(the hypothesis loop with budget, stats and shrinking), `workers` (-j N), `writer`
(a found history as a scenario file and its report).  `klp-harness fuzz` is the
command (harness/commands/fuzz.py); docs/fuzz.md says how to read what it finds.
"""
