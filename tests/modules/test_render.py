"""Each feature of a module description shows up in the rendered C as intended."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.modules.render import render_modules, render_patch, render_sources, render_target
from harness.scenario.types import (
    VMLINUX,
    Blocker,
    Callback,
    KlpState,
    PatchModule,
    PatchObject,
    ShadowOp,
    ShadowOpKind,
    TargetModule,
)

ALL = frozenset(Callback)
TARGET = TargetModule("klp_target", ("alpha", "beta", "gamma"), blocker=Blocker("beta"))
TARGET2 = TargetModule("klp_other", ("alpha",), log_init_exit=False)
PATCH = PatchModule(
    "klp_patch",
    (
        PatchObject(VMLINUX, ("cmdline_proc_show", "meminfo_proc_show"), ALL),
        PatchObject("klp_target", ("alpha", "beta"), frozenset({Callback.PRE_PATCH})),
        PatchObject("klp_other", ("alpha",)),
    ),
    replace=True,
    pre_patch_ret=-19,
    states=(KlpState(1, 2), KlpState(9, 1)),
)


def function_body(source: str, signature: str) -> str:
    start = source.index(signature)
    return source[start : source.index("\n}\n", start)]


# ---- target modules ---------------------------------------------------------------------


def test_target_functions_are_noipa_distinct_and_report_orig() -> None:
    c = render_target(TARGET)
    bodies = []
    for i, func in enumerate(TARGET.funcs):
        sig = f"static noinline __attribute__((__noipa__)) const char *{func}(const bool *park)"
        body = function_body(c, sig)
        assert f"klp_harness_calls[{i}]++;" in body
        assert f'return "{func}: orig";' in body
        assert "while (park && READ_ONCE(*park))\n\t\tmsleep(20);" in body
        bodies.append(body.split("\n", 1)[1])
    assert len(set(bodies)) == len(bodies)


def test_target_debugfs_files() -> None:
    c = render_target(TARGET)
    for func in TARGET.funcs:
        assert f'{{ .name = "{func}", .fn = {func} }},' in c
    assert 'debugfs_lookup("klp_harness", NULL)' in c
    assert 'debugfs_create_dir("klp_harness", NULL)' in c
    assert "debugfs_create_dir(KBUILD_MODNAME, root)" in c
    assert 'seq_printf(m, "%s\\n", func->fn(NULL));' in c
    assert "debugfs_remove_recursive(klp_harness_dir);" in c


def test_target_init_exit_lines() -> None:
    c = render_target(TARGET)
    assert '#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt' in c
    assert 'pr_info("%s\\n", "klp_target_init");' in c
    assert 'pr_info("%s\\n", "klp_target_exit");' in c
    quiet = render_target(TARGET2)
    assert '_init");' not in quiet and '_exit");' not in quiet


def test_target_without_funcs_or_blocker() -> None:
    c = render_target(TargetModule("klp_empty"))
    assert "klp_harness_funcs" not in c
    assert "module_param" not in c
    assert "klp_harness_work" not in c


def test_blocker() -> None:
    c = render_target(TARGET)
    work = function_body(c, "static void klp_harness_work_fn(struct work_struct *klp_harness_w)\n{")
    assert work.index('pr_info("%s enter\\n", "beta");') < work.index(
        "complete(&klp_harness_entered);"
    )
    assert work.index("beta(&klp_harness_block);") < work.index('pr_info("%s exit\\n", "beta");')
    assert (
        "module_param_cb(block_transition, &klp_harness_block_ops, &klp_harness_block, 0644);" in c
    )
    assert ".set = klp_harness_block_set," in c
    setter = function_body(c, "static int klp_harness_block_set(")
    assert "klp_harness_start_work();" in setter  # park
    assert "flush_work(&klp_harness_work);" in setter  # release waits for `exit`
    init = function_body(c, "static int __init klp_harness_init(void)")
    assert "if (!READ_ONCE(klp_harness_block))\n\t\tflush_work(&klp_harness_work);" in init
    exit_ = function_body(c, "static void __exit klp_harness_exit(void)")
    assert exit_.index("WRITE_ONCE(klp_harness_block, false);") < exit_.index(
        "flush_work(&klp_harness_work);"
    )
    named = render_target(TargetModule("t", ("f",), blocker=Blocker("f", param="hold")))
    assert "module_param_cb(hold," in named


# ---- livepatch modules --------------------------------------------------------------------


def test_patch_objects_funcs_in_order() -> None:
    c = render_patch(PATCH)
    objs = c[c.index("static struct klp_object klp_harness_objs[] = {") :]
    assert objs.index(".name = NULL,") < objs.index('.name = "klp_target"')
    assert objs.index('.name = "klp_target"') < objs.index('.name = "klp_other"')
    assert '.old_name = "cmdline_proc_show",' in c
    assert ".new_func = klp_harness_new_0_cmdline_proc_show," in c
    assert ".new_func = klp_harness_new_0_meminfo_proc_show," in c
    assert ".new_func = klp_harness_new_1_alpha," in c
    assert ".new_func = klp_harness_new_2_alpha," in c  # same name, other object


def test_patch_vmlinux_replacements_print_like_upstream() -> None:
    body = function_body(
        render_patch(PATCH), "static int klp_harness_new_0_cmdline_proc_show(struct seq_file *m"
    )
    assert 'seq_printf(m, "%s: %s\\n", THIS_MODULE->name, "this has been live patched");' in body


def test_patch_target_replacement_parks_and_reports_patch() -> None:
    body = function_body(
        render_patch(PATCH), "static const char *klp_harness_new_1_beta(const bool *park)"
    )
    assert "while (park && READ_ONCE(*park))" in body
    assert 'return KBUILD_MODNAME ": this has been live patched";' in body


def default_replacement(source: str, name: str) -> str:
    start = source.index(f'"{name}:\\n\\t"')
    return source[start : source.index(".size", start)]


def test_default_replacement_keeps_where_it_resumes_only_in_vmlinux() -> None:
    """A module of the kernel can be unloaded and loaded again elsewhere while the
    patch stays: a resume address kept from the first call would jump into the
    freed code (dummy reloaded below a module unloaded meanwhile oopsed)."""
    patch = PatchModule(
        "p",
        (PatchObject(VMLINUX, ("__x64_sys_getpid",)), PatchObject("dummy", ("dummy_get_stats64",))),
    )
    c = render_patch(patch, targets=())
    kept = default_replacement(c, "klp_harness_new_0___x64_sys_getpid")
    found_each_call = default_replacement(c, "klp_harness_new_1_dummy_get_stats64")
    assert "klp_harness_resume+0(%rip)" in kept and "jnz 1f" in kept
    assert "klp_harness_resume" not in found_each_call and "jnz" not in found_each_call
    assert "call klp_harness_find_resume" in found_each_call
    assert "jmp __x86_indirect_thunk_r11" in found_each_call


def test_patch_params() -> None:
    c = render_patch(PATCH)
    assert "static int replace = 1;\nmodule_param(replace, int, 0644);" in c
    assert "static int pre_patch_ret = -19;\nmodule_param(pre_patch_ret, int, 0644);" in c
    init = function_body(c, "static int __init klp_harness_init(void)")
    assert init.index("klp_harness_patch.replace = replace;") < init.index(
        "klp_enable_patch(&klp_harness_patch);"
    )
    plain = render_patch(PatchModule("p", (PatchObject(VMLINUX, ("cmdline_proc_show",)),)))
    assert "static int replace = 0;" in plain and "static int pre_patch_ret = 0;" in plain


def test_patch_is_a_livepatch_module() -> None:
    c = render_patch(PATCH)
    assert 'MODULE_INFO(livepatch, "Y");' in c
    assert 'MODULE_LICENSE("GPL");' in c


def test_callbacks_per_object() -> None:
    c = render_patch(PATCH)
    objs = c[c.index("static struct klp_object klp_harness_objs[] = {") :]
    vmlinux, target, other = objs.split("\t{\n\t\t.name")[1:4]
    for cb in ("pre_patch", "post_patch", "pre_unpatch", "post_unpatch"):
        assert f".{cb} = klp_harness_{cb}," in vmlinux
        assert f'klp_harness_callback_info("{cb}_callback", obj);' in c
    assert ".pre_patch = klp_harness_pre_patch," in target
    assert "post_patch" not in target
    assert ".callbacks" not in other
    pre = function_body(c, "static int klp_harness_pre_patch(struct klp_object *obj)")
    assert pre.index("callback_info") < pre.index("if (pre_patch_ret)\n\t\treturn pre_patch_ret;")
    assert '"[MODULE_STATE_COMING] Full formed, running module_init"' in c
    assert 'pr_info("%s: %s -> %s\\n", callback, obj->mod->name,' in c
    assert 'pr_info("%s: vmlinux\\n", callback);' in c


def test_only_used_callbacks_are_emitted() -> None:
    patch = PatchModule(
        "p", (PatchObject(VMLINUX, ("cmdline_proc_show",), frozenset({Callback.POST_UNPATCH})),)
    )
    c = render_patch(patch)
    assert "klp_harness_post_unpatch(struct klp_object *obj)" in c
    for cb in ("pre_patch", "post_patch", "pre_unpatch"):
        assert f"klp_harness_{cb}(struct klp_object" not in c
    assert "klp_harness_callback_info" not in render_patch(PatchModule("q", ()))


def test_states() -> None:
    c = render_patch(PATCH)
    assert re.search(r"\.id = 1,\s+\.version = 2,", c)
    assert re.search(r"\.id = 9,\s+\.version = 1,", c)
    assert ".states = klp_harness_states," in c
    assert "klp_get_prev_state(id)" in c and "klp_get_state(&klp_harness_patch, id)" in c
    pre = function_body(c, "static int klp_harness_pre_patch(struct klp_object *obj)")
    assert pre.index("klp_harness_allocate_state(1);") < pre.index("klp_harness_allocate_state(9);")
    assert "klp_harness_fix_state(9, 1);" in c
    assert "klp_harness_restore_state(1, 0);" in c
    assert "klp_harness_free_state(9);" in c
    assert "id == 1 ? &console_loglevel : &klp_harness_private[slot]" in c
    assert "CONSOLE_LOGLEVEL_MOTORMOUTH" in c
    assert 'pr_info("%s: %s (state %lu)\\n", func, what, id);' in c
    for words in (
        '"allocating space to store console_loglevel"',
        '"space to store console_loglevel already allocated"',
        '"fix_console_loglevel", "fixing console_loglevel"',
        '"taking over the console_loglevel change"',
        '"restore_console_loglevel", "restoring console_loglevel"',
        '"passing the console_loglevel change back to the old livepatch"',
        '"keeping space to store console_loglevel"',
        '"freeing space for the stored console_loglevel"',
    ):
        assert words in c
    assert "struct klp_state" not in render_patch(PatchModule("q", ()))


def test_states_each_patch_owns_its_allocation() -> None:
    """A take-over copies the older patch's value instead of sharing its pointer, and
    whatever post_unpatch keeps is freed by exit or a failed init (issue 17: a shared
    pointer was freed by the older patch and again by the newer one)."""
    c = render_patch(PATCH)
    alloc = function_body(c, "static int klp_harness_allocate_state(unsigned long id)")
    assert alloc.index("kzalloc(sizeof(int), GFP_KERNEL)") < alloc.index("klp_get_prev_state")
    fix = function_body(c, "static void klp_harness_fix_state(unsigned long id, int slot)")
    assert "*(int *)state->data = *(int *)prev_state->data;" in fix
    assert "state->data = prev_state->data" not in c
    free = function_body(c, "static void klp_harness_free_state(unsigned long id)")
    assert free.index("keeping space") < free.index("return;") < free.index("kfree(state->data);")
    assert "state->data = NULL;" in free
    pre = function_body(c, "static int klp_harness_pre_patch(struct klp_object *obj)")
    assert "klp_harness_free_states();\n\t\t\treturn ret;" in pre
    init = function_body(c, "static int __init klp_harness_init(void)")
    assert init.index("if (ret) {") < init.index("klp_harness_free_states();")
    exit_ = function_body(c, "static void __exit klp_harness_exit(void)")
    assert "klp_harness_free_states();" in exit_
    plain = render_patch(PatchModule("q", ()))
    assert "klp_harness_free_states" not in plain
    assert "ret = klp_enable_patch(&klp_harness_patch);" in plain


# ---- shadow variables ---------------------------------------------------------------------


SHADOW = (
    ShadowOp(ShadowOpKind.GET, 0x1234, obj=1),
    ShadowOp(ShadowOpKind.ALLOC, 0x1234, obj=1, ctor_data=1),
    ShadowOp(ShadowOpKind.GET_OR_ALLOC, 0x1235, obj=2, ctor_data=2),
    ShadowOp(ShadowOpKind.FREE, 0x1234, obj=1, dtor=True),
    ShadowOp(ShadowOpKind.FREE_ALL, 0x1235),
)


def test_shadow_script_in_target_and_patch() -> None:
    for c in (
        render_target(TargetModule("t", shadow=SHADOW)),
        render_patch(PatchModule("p", (), shadow=SHADOW)),
    ):
        script = function_body(c, "static int klp_harness_shadow_script(void)")
        calls = [
            "klp_harness_ptr_id(NULL);",  # PTR0
            "klp_harness_shadow_get(0, 0, 0x1234);",
            "klp_harness_shadow_alloc(0, 0, 0x1234, 0, false);",
            "klp_harness_shadow_alloc(1, 1, 0x1235, 1, true);",
            "klp_harness_shadow_free(0, 0, 0x1234, klp_harness_shadow_dtor);",
            "klp_harness_shadow_free_all(1, 0x1235, NULL);",
        ]
        positions = [script.index(call) for call in calls]
        assert positions == sorted(positions)
        assert "klp_harness_obj = kcalloc(2, sizeof(*klp_harness_obj), GFP_KERNEL);" in script
        assert "static int *klp_harness_ctor_ptr[2];" in c
        assert "static int **klp_harness_sv[2][2];" in c


def test_shadow_script_runs_first_in_init() -> None:
    target = render_target(TargetModule("t", ("f",), Blocker("f"), shadow=SHADOW))
    init = function_body(target, "static int __init klp_harness_init(void)")
    order = ['"t_init"', "klp_harness_shadow_script();", "klp_harness_start_work();"]
    assert [init.index(s) for s in order] == sorted(init.index(s) for s in order)
    patch = render_patch(PatchModule("p", (), shadow=SHADOW))
    init = function_body(patch, "static int __init klp_harness_init(void)")
    assert init.index("klp_harness_shadow_script();") < init.index("klp_enable_patch(")


def test_shadow_log_formats_are_upstreams() -> None:
    c = render_target(TargetModule("t", shadow=SHADOW))
    assert 'pr_info("klp_%s(obj=PTR%d, id=0x%lx) = PTR%d\\n", "shadow_get", p_obj, id, p_sv);' in c
    assert (
        'pr_info("klp_%s(obj=PTR%d, id=0x%lx, size=%zx, gfp_flags=%pGg), ctor=PTR%d, '
        'ctor_data=PTR%d = PTR%d\\n",\n\t\tor_get ? "shadow_get_or_alloc" : "shadow_alloc",'
    ) in c
    assert 'pr_info("%s: PTR%d -> PTR%d\\n", "shadow_ctor", p_sv, p_var);' in c
    assert 'pr_info("klp_%s(obj=PTR%d, id=0x%lx, dtor=PTR%d)\\n", "shadow_free",' in c
    assert 'pr_info("klp_%s(id=0x%lx, dtor=PTR%d)\\n", "shadow_free_all", id, p_dtor);' in c
    assert 'pr_info("%s(obj=PTR%d, shadow_data=PTR%d)\\n", "shadow_dtor", p_obj, p_sv);' in c
    assert 'pr_info("  got %s NULL result\\n", want ? "unexpected" : "expected");' in c
    assert 'pr_info("  got %s PTR%d -> PTR%d result\\n",' in c


def test_shadow_pointer_numbering_order() -> None:
    """Ids are taken in the order values appear in a line; ctor data before the call."""
    c = render_target(TargetModule("t", shadow=SHADOW))
    alloc = function_body(c, "static void klp_harness_shadow_alloc(")
    order = [
        "klp_harness_ptr_id(*var);\n\tklp_harness_ctor_ran = false;",
        "sv = klp_shadow_alloc(",
        "p_obj = klp_harness_ptr_id(obj);",
        "p_ctor = klp_harness_ptr_id(",
        "p_data = klp_harness_ptr_id(*var);",
        "p_sv = klp_harness_ptr_id(sv);",
    ]
    assert [alloc.index(s) for s in order] == sorted(alloc.index(s) for s in order)
    ctor = function_body(c, "static int klp_harness_shadow_ctor(")
    assert ctor.index("p_sv = klp_harness_ptr_id(sv);") < ctor.index("p_var = ")


def test_shadow_checks_follow_gets_and_found_get_or_allocs() -> None:
    c = render_target(TargetModule("t", shadow=SHADOW))
    get = function_body(c, "static void klp_harness_shadow_get(")
    assert (
        "klp_harness_shadow_check(sv, klp_harness_sv[o][col], klp_harness_sv_data[o][col]);" in get
    )
    alloc = function_body(c, "static void klp_harness_shadow_alloc(")
    new = alloc.index("if (klp_harness_ctor_ran) {")
    assert alloc.index("klp_harness_sv[o][col] = sv;") > new
    assert alloc.index("if (or_get)\n\t\tklp_harness_shadow_check(") > alloc.index("return;", new)


def test_shadow_emits_only_what_is_used() -> None:
    c = render_target(TargetModule("t", shadow=(ShadowOp(ShadowOpKind.FREE_ALL, 7),)))
    assert "klp_harness_shadow_free_all(0, 0x7, NULL);" in c
    for unused in (
        "shadow_get(",
        "shadow_ctor(",
        "shadow_dtor(",
        "shadow_check(",
        "long *klp_harness_obj",
        "klp_harness_sv[",
    ):
        assert unused not in c
    assert "klp_harness_shadow" not in render_target(TargetModule("u"))


# ---- sets of modules ----------------------------------------------------------------------


def test_render_is_deterministic_and_path_free(tmp_path: Path) -> None:
    first = render_sources([TARGET, TARGET2, PATCH])
    assert first == render_sources([TARGET, TARGET2, PATCH])
    for text in first.values():
        assert str(tmp_path) not in text and "/" not in text.split("\n", 1)[0][3:]
    paths = render_modules([TARGET, TARGET2, PATCH], tmp_path)
    assert set(paths) == {"klp_target", "klp_other", "klp_patch"}
    assert paths["klp_patch"].read_text() == first["klp_patch"]
    kbuild = (tmp_path / "Kbuild").read_text()
    assert kbuild.index("obj-m += klp_other.o") < kbuild.index("obj-m += klp_patch.o")
    assert "klp_target.o" in kbuild


def test_rerender_keeps_unchanged_files(tmp_path: Path) -> None:
    paths = render_modules([TARGET], tmp_path)
    before = paths["klp_target"].stat().st_mtime_ns
    render_modules([TARGET], tmp_path)
    assert paths["klp_target"].stat().st_mtime_ns == before


def test_render_rejects_bad_descriptions() -> None:
    with pytest.raises(ScenarioError, match=r"target\[0\]\.funcs\[0\]"):
        render_sources([TargetModule("t", ('x"); evil("',))])
    with pytest.raises(ScenarioError, match=r"patch\[0\]\.object\[0\]\.name"):
        render_sources([PatchModule("p", (PatchObject("bad-name", ("f",)),))])


def test_render_patches_with_context_targets() -> None:
    sources = render_sources([PATCH], context=[TARGET, TARGET2])
    assert set(sources) == {"klp_patch"}
