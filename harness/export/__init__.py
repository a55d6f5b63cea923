"""Findings that leave the harness: scenarios exported as upstream-style livepatch
selftests (`directory`, `kselftest`, `transcript`) and as standalone reproducers
(`repro`), their modules from plain templates (`modules`, kmod_templates/export/),
their expectations the model's prediction (`plan`, `expect`), the modules renamed
for upstream's filter (`names`), and what cannot be exported (`exportable`)."""
