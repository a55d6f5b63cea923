"""Differential testing: random worlds and step histories (hypothesis) over the whole
scenario language, predicted by the model and run on real guests, shrunk on the real
kernel to a minimal scenario and kept as a finding.

`palette` (the modules, actors and programs worlds are made of), `steering` (menus of
what the model's state allows, refusals steered around), `histories` (hypothesis
strategies, predictions cut at refused steps), `judge` (model vs kernel, or model vs
model), `search` (the hypothesis loop with budget, stats and shrinking), `findings`
(signatures, titles, the corpus), `found` (a found history as a scenario file and its
report), `workers` (-j N; `process` is a worker process's entry), `campaign` (a run
over several profiles or series, its summary), `prepare` (the palette checked and
built for a profile).  `klp-harness fuzz` is the command (harness/commands/fuzz.py);
docs/fuzz.md says how to read what it finds.
"""
