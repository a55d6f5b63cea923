/*
 * livepatch_kpatch_noreplace: kpatch-build --non-replace of a diff changing
 * meminfo_proc_show: one vmlinux function, no callbacks (each callback section is
 * only its padding), and the hook built with -DKLP_REPLACE_ENABLE=false.
 */
#include <linux/seq_file.h>

KPATCH_STRING(kpatch_str_vmlinux, "vmlinux");
KPATCH_STRING(kpatch_str_meminfo, "meminfo_proc_show");

static int meminfo_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "livepatch_kpatch_noreplace: this has been live patched\n");
	return 0;
}

static struct kpatch_patch_func kpatch_funcs[] __used __section(".kpatch.funcs") = {
	KPATCH_FUNC(meminfo_proc_show, kpatch_str_meminfo, kpatch_str_vmlinux, 0),
};

KPATCH_CALLBACKS(pre_patch, 0) = { .pad = 0 };
KPATCH_CALLBACKS(post_patch, 0) = { .pad = 0 };
KPATCH_CALLBACKS(pre_unpatch, 0) = { .pad = 0 };
KPATCH_CALLBACKS(post_unpatch, 0) = { .pad = 0 };

#define KLP_REPLACE_ENABLE false
