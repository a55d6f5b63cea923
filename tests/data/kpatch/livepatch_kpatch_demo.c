/*
 * livepatch_kpatch_demo: what kpatch-build makes of a diff that changes two /proc show
 * functions of vmlinux and livepatch-shadow-mod's dummy_check(), with callbacks.
 *
 * .kpatch.funcs lists cmdline_proc_show, version_proc_show (vmlinux) and dummy_check
 * (livepatch_shadow_mod), so the patch's objects are livepatch_shadow_mod, then
 * vmlinux with version_proc_show before cmdline_proc_show.  Callbacks: pre_patch and
 * post_unpatch on vmlinux, post_patch on livepatch_shadow_mod.  The replacement of
 * dummy_check reaches the module's non-exported dummy_list through a livepatch
 * relocation (.klp.sym.livepatch_shadow_mod.dummy_list,0), as create-klp-module
 * writes one for a reference to a symbol of the patched object.
 */
#include <linux/seq_file.h>
#include <linux/jiffies.h>
#include <linux/list.h>

KPATCH_STRING(kpatch_str_vmlinux, "vmlinux");
KPATCH_STRING(kpatch_str_shadow, "livepatch_shadow_mod");
KPATCH_STRING(kpatch_str_cmdline, "cmdline_proc_show");
KPATCH_STRING(kpatch_str_version, "version_proc_show");
KPATCH_STRING(kpatch_str_check, "dummy_check");

/* The replacements keep the names of the functions they replace, as kpatch's do. */
static int cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "livepatch_kpatch_demo: this has been live patched\n");
	return 0;
}

static int version_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "Linux version: patched by livepatch_kpatch_demo\n");
	return 0;
}

struct dummy {
	struct list_head list;
	unsigned long jiffies_expire;
};

extern struct list_head kpatch_dummy_list
	asm("\".klp.sym.livepatch_shadow_mod.dummy_list,0\"") __attribute__((weak));
static struct list_head *kpatch_dummy_list_ref __used
	__section(".kpatch_refs.livepatch_shadow_mod") = &kpatch_dummy_list;
KLP_RELA_HOLDER("livepatch_shadow_mod", "kpatch_refs.livepatch_shadow_mod");

static bool dummy_check(struct dummy *d, unsigned long jiffies)
{
	/* The module's own list, written by the livepatch core when it loads. */
	return READ_ONCE(kpatch_dummy_list_ref) && time_after(jiffies, d->jiffies_expire);
}

static struct kpatch_patch_func kpatch_funcs[] __used __section(".kpatch.funcs") = {
	KPATCH_FUNC(cmdline_proc_show, kpatch_str_cmdline, kpatch_str_vmlinux, 0),
	KPATCH_FUNC(dummy_check, kpatch_str_check, kpatch_str_shadow, 0),
	KPATCH_FUNC(version_proc_show, kpatch_str_version, kpatch_str_vmlinux, 0),
};

static int kpatch_demo_pre_patch(struct klp_object *obj)
{
	pr_info("livepatch_kpatch_demo: pre_patch vmlinux\n");
	return 0;
}

static void kpatch_demo_post_patch(struct klp_object *obj)
{
	pr_info("livepatch_kpatch_demo: post_patch livepatch_shadow_mod\n");
}

static void kpatch_demo_post_unpatch(struct klp_object *obj)
{
	pr_info("livepatch_kpatch_demo: post_unpatch vmlinux\n");
}

KPATCH_CALLBACKS(pre_patch, 1) = { .entry = { { kpatch_demo_pre_patch, kpatch_str_vmlinux } } };
KPATCH_CALLBACKS(post_patch, 1) = { .entry = { { kpatch_demo_post_patch, kpatch_str_shadow } } };
KPATCH_CALLBACKS(pre_unpatch, 0) = { .pad = 0 };
KPATCH_CALLBACKS(post_unpatch, 1) = {
	.entry = { { kpatch_demo_post_unpatch, kpatch_str_vmlinux } },
};
