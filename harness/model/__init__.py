"""Reference model of the Linux livepatch core: predicts what every scenario step does.

Laid out like kernel/livepatch/: `core` (patch life cycle, sysfs writes, module hooks),
`patch` (func stacks, the ftrace handler), `transition` (consistency model), `state`
(klp_state), `shadow` (shadow variables), `callbacks`, `replace` (atomic replace and
freeing), plus `modules` (module loader and userland tools), `profiles` (kernel-version
differences) and `predict` (the entry point).  See docs/model-notes.md.
"""

from harness.model.predict import StepModel, predict, predicted_log

__all__ = ["StepModel", "predict", "predicted_log"]
