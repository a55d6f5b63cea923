/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The special sections of a klp-build module (Linux 7.x: scripts/livepatch/klp-build,
 * objtool `klp diff` and `klp post-link`), as include/linux/livepatch_external.h and
 * tools/objtool/include/objtool/klp.h define them:
 *
 * - .init.klp_objects: one struct klp_object_ext (64 bytes) per patched object (a
 *   diffed vmlinux.o or module); name (none for vmlinux), funcs and the callbacks
 *   set are R_X86_64_64 relocations, nr_funcs is bytes;
 * - .init.klp_funcs: one struct klp_func_ext (24 bytes) per changed function;
 *   old_name and new_func are relocations, sympos is bytes;
 * - .rodata.klp.str1.1: the names.
 *
 * The first part of each fixture's source (the recipe, tests/modules/tool_fixtures.py,
 * puts this file, the fixture and init.c together).
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/livepatch.h>

#define KLP_STRING(var, text) \
	static const char var[] __used __section(".rodata.klp.str1.1") __aligned(1) = text

#define KLP_FUNCS(var) \
	static struct klp_func_ext var[] __used __aligned(8) __section(".init.klp_funcs")

#define KLP_OBJECTS \
	static struct klp_object_ext klp_objects[] __used __aligned(8) __section(".init.klp_objects")

/*
 * A livepatch relocation for a pointer alone in data section `.<sec>`: the section
 * `.klp.rela.<obj>..<sec>` is named here and made one by harness/modules/klprela.py
 * (its module docstring says how).  The name is spelled in two pieces so that the
 * module build leaves the conversion to the recipe, which makes it after stripping
 * the debug information (objcopy would rewrite a converted section as an ordinary
 * one).
 */
#define KLP_RELA_HOLDER(obj, sec) \
	asm(".pushsection \".klp.rela" "." obj ".." sec "\", \"\", @note\n.popsection\n")
