/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The special sections of a kpatch-build module (kpatch 0.4 .. 0.9.11), as
 * create-diff-object writes them and kmod/patch/kpatch.lds lays them out:
 *
 * - .kpatch.funcs: one struct kpatch_patch_func (56 bytes) per replaced function;
 *   new_addr, name and objname are R_X86_64_64 relocations (the function, and
 *   strings in .kpatch.strings), new_size, old_addr, old_size and sympos are bytes.
 * - .kpatch.callbacks.{pre_patch,post_patch,pre_unpatch,post_unpatch}: one
 *   {callback, objname} pair (16 bytes) per KPATCH_*_CALLBACK(), the objname filled
 *   in by create-diff-object, then the 8 zero bytes (QUAD(0)) the linker script pads
 *   every such section with, so that an empty one is kept.
 *
 * The first part of each fixture's source (the recipe, tests/modules/tool_fixtures.py, puts this
 * file, the fixture and hook.c together).
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/livepatch.h>

struct kpatch_patch_func {
	unsigned long new_addr;
	unsigned long new_size;
	unsigned long old_addr;
	unsigned long old_size;
	unsigned long sympos;
	const char *name;
	const char *objname;
};

struct kpatch_callback {
	void *callback;
	const char *objname;
};

#define KPATCH_STRING(var, text) \
	static const char var[] __used __section(".kpatch.strings") __aligned(1) = text

#define KPATCH_FUNC(fn, old_name, obj, pos)				\
	{								\
		.new_addr = (unsigned long)fn, .name = old_name,	\
		.objname = obj, .sympos = pos,				\
	}

/* A callback section of `n` entries, padded as kpatch.lds pads it. */
#define KPATCH_CALLBACKS(when, n)					\
	static struct {							\
		struct kpatch_callback entry[n];			\
		unsigned long pad;					\
	} kpatch_callbacks_##when __used __section(".kpatch.callbacks." #when)

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
