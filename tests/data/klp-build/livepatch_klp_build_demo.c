/*
 * livepatch_klp_build_demo: what klp-build makes of a diff that changes two /proc
 * show functions of vmlinux and livepatch-shadow-mod's dummy_check(), with
 * KLP_PRE_PATCH_CALLBACK / KLP_POST_UNPATCH_CALLBACK in vmlinux and
 * KLP_POST_PATCH_CALLBACK in the module.
 *
 * One klp_object_ext per diffed binary, in the order the objects were linked
 * (vmlinux, then livepatch_shadow_mod); funcs in the order of the diffed object's
 * symbols.  The replacement of dummy_check reaches the module's non-exported
 * dummy_list through a livepatch relocation
 * (.klp.sym.livepatch_shadow_mod.dummy_list,0), as `objtool klp post-link` writes
 * one from __klp_relocs.
 */
#include <linux/seq_file.h>
#include <linux/jiffies.h>
#include <linux/list.h>

KLP_STRING(klp_str_shadow, "livepatch_shadow_mod");
KLP_STRING(klp_str_cmdline, "cmdline_proc_show");
KLP_STRING(klp_str_version, "version_proc_show");
KLP_STRING(klp_str_check, "dummy_check");

/* The replacements keep the names of the functions they replace, as klp diff's do. */
static int cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "livepatch_klp_build_demo: this has been live patched\n");
	return 0;
}

static int version_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "Linux version: patched by livepatch_klp_build_demo\n");
	return 0;
}

struct dummy {
	struct list_head list;
	unsigned long jiffies_expire;
};

extern struct list_head klp_dummy_list
	asm("\".klp.sym.livepatch_shadow_mod.dummy_list,0\"") __attribute__((weak));
static struct list_head *klp_dummy_list_ref __used
	__section(".klp_refs.livepatch_shadow_mod") = &klp_dummy_list;
KLP_RELA_HOLDER("livepatch_shadow_mod", "klp_refs.livepatch_shadow_mod");

static bool dummy_check(struct dummy *d, unsigned long jiffies)
{
	/* The module's own list, written by the livepatch core when it loads. */
	return READ_ONCE(klp_dummy_list_ref) && time_after(jiffies, d->jiffies_expire);
}

static int klp_demo_pre_patch(struct klp_object *obj)
{
	pr_info("livepatch_klp_build_demo: pre_patch vmlinux\n");
	return 0;
}

static void klp_demo_post_patch(struct klp_object *obj)
{
	pr_info("livepatch_klp_build_demo: post_patch livepatch_shadow_mod\n");
}

static void klp_demo_post_unpatch(struct klp_object *obj)
{
	pr_info("livepatch_klp_build_demo: post_unpatch vmlinux\n");
}

KLP_FUNCS(klp_funcs_vmlinux) = {
	{ .old_name = klp_str_cmdline, .new_func = cmdline_proc_show, .sympos = 0 },
	{ .old_name = klp_str_version, .new_func = version_proc_show, .sympos = 0 },
};

KLP_FUNCS(klp_funcs_shadow) = {
	{ .old_name = klp_str_check, .new_func = dummy_check, .sympos = 0 },
};

KLP_OBJECTS = {
	{
		.funcs = klp_funcs_vmlinux,
		.nr_funcs = ARRAY_SIZE(klp_funcs_vmlinux),
		.callbacks = { .pre_patch = klp_demo_pre_patch,
			       .post_unpatch = klp_demo_post_unpatch },
	},
	{
		.name = klp_str_shadow,
		.funcs = klp_funcs_shadow,
		.nr_funcs = ARRAY_SIZE(klp_funcs_shadow),
		.callbacks = { .post_patch = klp_demo_post_patch },
	},
};
