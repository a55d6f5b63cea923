"""Per-object callbacks: the core's wrappers (kernel/livepatch/core.h) and what our
generated livepatch modules do in them (lines modelled on lib/livepatch/test_klp_*.c).

The core decides *whether* a callback runs (`klp_*_callback`); the module decides what
it logs.  Each callback of an object that has it logs one `callback_info()` line, like
upstream's test_klp_callbacks_demo; vmlinux callbacks of a patch with states then run
the state helpers of test_klp_state2 for each state, taking over from (or handing back
to) the previous patch's state through `klp_get_prev_state`.

The helpers also mirror what the template does with memory (kmod_templates/livepatch.c.j2:
each patch owns its `state->data`, a take-over copies the older patch's value), on the
Kernel's heap model, so a history in which a module would touch freed memory raises
ModuleMemoryError instead of being predicted as if nothing happened.
"""

from __future__ import annotations

from harness.model.kernel.fields import attach_fields, free_fields
from harness.model.kernel.klp import KlpObject, KlpPatch
from harness.model.kernel.state import klp_get_prev_state_patch
from harness.model.kernel.system import Kernel
from harness.scenario.kstrto import kstrtoint
from harness.scenario.types import Callback, KlpState, PatchModule

# test_klp_state2.c: one pair of lines per helper, chosen by klp_get_prev_state().
STATE_LINES: dict[Callback, tuple[str, str]] = {
    # callback: (line with a previous state, line without)
    Callback.PRE_PATCH: (
        "allocate_loglevel_state: space to store console_loglevel already allocated",
        "allocate_loglevel_state: allocating space to store console_loglevel",
    ),
    Callback.POST_PATCH: (
        "fix_console_loglevel: taking over the console_loglevel change",
        "fix_console_loglevel: fixing console_loglevel",
    ),
    Callback.PRE_UNPATCH: (
        "restore_console_loglevel: passing the console_loglevel change back to the old livepatch",
        "restore_console_loglevel: restoring console_loglevel",
    ),
    Callback.POST_UNPATCH: (
        "free_loglevel_state: keeping space to store console_loglevel",
        "free_loglevel_state: freeing space for the stored console_loglevel",
    ),
}

CONSOLE_LOGLEVEL_STATE = 1  # the id that behaves exactly like upstream's test_klp_state2


def _callback_info(k: Kernel, obj: KlpObject, cb: Callback) -> None:
    """upstream's callback_info(): `<cb>_callback: vmlinux` or `... <mod> -> <state>`."""
    patch = obj.patch.name
    if obj.mod is not None:
        k.pr_info(patch, f"{cb.value}_callback: {obj.mod.name} -> {obj.mod.state.value}")
    else:
        k.pr_info(patch, f"{cb.value}_callback: vmlinux")


def _state_helpers(k: Kernel, obj: KlpObject, cb: Callback) -> None:
    """The module's state handling after a vmlinux callback (test_klp_state2 logic):
    one line per state, chosen by klp_get_prev_state(), and the template's memory."""
    if obj.is_module:
        return
    patch = obj.patch
    for state in patch.states:
        prev = klp_get_prev_state_patch(k, state.id)
        line = STATE_LINES[cb][0 if prev is not None else 1]
        if cb is Callback.PRE_PATCH:
            # allocated before the line, whatever the line says
            patch.state_data[state.id] = k.kzalloc(patch.name)
        k.pr_info(patch.name, _for_state(line, state))
        _state_memory(k, patch, state.id, cb, prev)


def _state_memory(k: Kernel, patch: KlpPatch, id: int, cb: Callback, prev: KlpPatch | None) -> None:
    """What the template's fix/restore/free helpers do with `state->data` after their
    line (allocate is done by the caller)."""
    who = f"{patch.name}: {cb.value} of state {id}"
    own = patch.state_data.get(id)
    if cb is Callback.POST_PATCH:
        if prev is not None:  # take-over: *data = *prev_state->data
            k.kaccess(prev.state_data.get(id), f"{who} (reading {prev.name}'s)")
        k.kaccess(own, who)
    elif cb is Callback.PRE_UNPATCH and prev is None:  # restore from *data
        k.kaccess(own, who)
    elif cb is Callback.POST_UNPATCH and prev is None:  # "freeing space"
        k.kfree(own, who)
        patch.state_data[id] = None


def free_states(k: Kernel, patch: KlpPatch) -> None:
    """klp_harness_free_states(): module exit, or init after klp_enable_patch()
    failed; the patch is off klp_patches then, so nobody else reads its states."""
    for id, handle in patch.state_data.items():
        k.kfree(handle, f"{patch.name}: free_states of state {id}")
        patch.state_data[id] = None


def _for_state(line: str, state: KlpState) -> str:
    if state.id == CONSOLE_LOGLEVEL_STATE:
        return line
    return f"{line} (state {state.id})"


def _module_callback(k: Kernel, obj: KlpObject, cb: Callback) -> int:
    """One callback of a livepatch module; returns what pre_patch returns.

    A module file (`ko`) logs upstream's callback_info() line only when the scenario
    says it does (`callback_lines`: the kernel's samples and test modules), its
    pre_patch returns its `pre_patch_ret` parameter when the scenario sets one (their
    convention) and 0 otherwise, and the generated modules' state helpers are not
    its: what it does with a state is not in the file."""
    module = obj.patch.mod
    desc = module.desc
    assert isinstance(desc, PatchModule)
    if desc.callback_lines:
        _callback_info(k, obj, cb)
    ret = 0
    if cb is Callback.PRE_PATCH:
        ret = kstrtoint(module.params.get("pre_patch_ret", str(desc.pre_patch_ret)))
        if ret:
            return ret  # a failing pre_patch allocates nothing
    if not desc.ko:
        _state_helpers(k, obj, cb)
    return ret


def klp_pre_patch_callback(k: Kernel, obj: KlpObject) -> int:
    """core.h: run pre_patch if any; its success arms post_unpatch."""
    ret = 0
    if Callback.PRE_PATCH in obj.callbacks:
        ret = _module_callback(k, obj, Callback.PRE_PATCH)
    obj.post_unpatch_enabled = not ret
    return ret


def klp_post_patch_callback(k: Kernel, obj: KlpObject) -> None:
    if Callback.POST_PATCH in obj.callbacks:
        _module_callback(k, obj, Callback.POST_PATCH)
    attach_fields(k, obj)  # the template's post_patch, after the callback's own lines


def klp_pre_unpatch_callback(k: Kernel, obj: KlpObject) -> None:
    if Callback.PRE_UNPATCH in obj.callbacks:
        _module_callback(k, obj, Callback.PRE_UNPATCH)


def klp_post_unpatch_callback(k: Kernel, obj: KlpObject) -> None:
    """core.h: post_unpatch only after a successful pre_patch, and only once."""
    if obj.post_unpatch_enabled:
        if Callback.POST_UNPATCH in obj.callbacks:
            _module_callback(k, obj, Callback.POST_UNPATCH)
        free_fields(k, obj)
    obj.post_unpatch_enabled = False
