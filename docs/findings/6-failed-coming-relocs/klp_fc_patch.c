// SPDX-License-Identifier: GPL-2.0
/*
 * klp_fc_patch: a livepatch module of tests/scenarios/bugs/07_failed_coming_leaves_klp_relocs.toml.
 *
 * Its callbacks log like test_klp_callbacks_demo's.
 * Parameters, as upstream's test modules have them: replace (the patch's `replace`,
 * default 0) and pre_patch_ret (what every pre_patch callback returns,
 * default 0).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/delay.h>

static int replace = 0;
module_param(replace, int, 0644);
MODULE_PARM_DESC(replace, "replace (default=0)");

static int pre_patch_ret = 0;
module_param(pre_patch_ret, int, 0644);
MODULE_PARM_DESC(pre_patch_ret, "pre_patch_ret (default=0)");

/*
 * Livepatch relocations (Documentation/livepatch/module-elf-format.rst), as
 * kpatch-build and klp-build emit them to reach a patched module's non-exported
 * symbols: each pointer below holds the address of the target's static target_funcs.
 * The symbol is a weak undefined `.klp.sym.<obj>.<name>,<sympos>` (weak, so modpost
 * accepts it; quoted, so the assembler takes the comma), and the pointer sits alone
 * in its data section, so its one relocation is the only one of `.rela<section>`.
 * An empty note section, never loaded, holds the name that relocation section
 * takes, `.klp.rela.<obj>.<section>`: after the build, klp-rela (klp-rela.c, run by
 * the Makefile) renames and flags it and gives the symbol SHN_LIVEPATCH.  The
 * livepatch core then writes the pointer when the target is loaded and, from v6.3,
 * clears it when the target goes.
 */
extern unsigned long klp_ref_0[]
	asm("\".klp.sym.klp_fc_target.target_funcs,0\"") __attribute__((weak));
static unsigned long *klp_reloc_0 __used
	__section(".klp_refs.klp_fc_target") = klp_ref_0;
asm(".pushsection \".klp.rela.klp_fc_target..klp_refs.klp_fc_target\", \"\", @note\n"
    ".popsection\n");

/* Replaces klp_fc_target:alpha(); parks like the original. */
static const char *livepatch_alpha(const bool *park)
{
	/* The target's static, through the klp relocation: unrelocated, it is NULL. */
	(void)READ_ONCE(klp_reloc_0[0]);
	while (park && READ_ONCE(*park))
		msleep(20);
	return KBUILD_MODNAME ": this has been live patched";
}

static const char *const module_state[] = {
	[MODULE_STATE_LIVE]	= "[MODULE_STATE_LIVE] Normal state",
	[MODULE_STATE_COMING]	= "[MODULE_STATE_COMING] Full formed, running module_init",
	[MODULE_STATE_GOING]	= "[MODULE_STATE_GOING] Going away",
	[MODULE_STATE_UNFORMED]	= "[MODULE_STATE_UNFORMED] Still setting it up",
};

static void callback_info(const char *callback, struct klp_object *obj)
{
	if (obj->mod)
		pr_info("%s: %s -> %s\n", callback, obj->mod->name, module_state[obj->mod->state]);
	else
		pr_info("%s: vmlinux\n", callback);
}

static int pre_patch_callback(struct klp_object *obj)
{
	callback_info(__func__, obj);
	if (pre_patch_ret)
		return pre_patch_ret;
	return 0;
}

static struct klp_func funcs_0[] = {
	{
		.old_name = "alpha",
		.new_func = livepatch_alpha,
	},
	{ }
};

static struct klp_object objs[] = {
	{
		.name = "klp_fc_target",
		.funcs = funcs_0,
		.callbacks = {
			.pre_patch = pre_patch_callback,
		},
	},
	{ }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int __init klp_fc_patch_init(void)
{
	patch.replace = replace;
	return klp_enable_patch(&patch);
}

static void __exit klp_fc_patch_exit(void)
{
}

module_init(klp_fc_patch_init);
module_exit(klp_fc_patch_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("Livepatch test: livepatch module klp_fc_patch");
