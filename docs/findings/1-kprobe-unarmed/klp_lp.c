// SPDX-License-Identifier: GPL-2.0
/*
 * klp_lp: a livepatch module of tests/scenarios/coexist/03_livepatch_first_then_kprobes.toml.
 *
 * Parameters, as upstream's test modules have them: replace (the patch's `replace`,
 * default 0) and pre_patch_ret (what every pre_patch callback returns,
 * default 0).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/seq_file.h>

static int replace = 0;
module_param(replace, int, 0644);
MODULE_PARM_DESC(replace, "replace (default=0)");

static int pre_patch_ret = 0;
module_param(pre_patch_ret, int, 0644);
MODULE_PARM_DESC(pre_patch_ret, "pre_patch_ret (default=0)");

/* Replaces cmdline_proc_show: what /proc/cmdline shows. */
static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s: %s\n", THIS_MODULE->name, "this has been live patched");
	return 0;
}

static struct klp_func funcs_0[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = livepatch_cmdline_proc_show,
	},
	{ }
};

static struct klp_object objs[] = {
	{
		.name = NULL,	/* vmlinux */
		.funcs = funcs_0,
	},
	{ }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int __init klp_lp_init(void)
{
	patch.replace = replace;
	return klp_enable_patch(&patch);
}

static void __exit klp_lp_exit(void)
{
}

module_init(klp_lp_init);
module_exit(klp_lp_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("Livepatch test: livepatch module klp_lp");
