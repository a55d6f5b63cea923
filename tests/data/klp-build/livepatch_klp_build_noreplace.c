/*
 * livepatch_klp_build_noreplace: klp-build --no-replace of a diff changing
 * meminfo_proc_show: one vmlinux object, one function, no callbacks, and init.c
 * compiled with -DKLP_NO_REPLACE.
 */
#include <linux/seq_file.h>

KLP_STRING(klp_str_meminfo, "meminfo_proc_show");

static int meminfo_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, "livepatch_klp_build_noreplace: this has been live patched\n");
	return 0;
}

KLP_FUNCS(klp_funcs_vmlinux) = {
	{ .old_name = klp_str_meminfo, .new_func = meminfo_proc_show, .sympos = 0 },
};

KLP_OBJECTS = {
	{ .funcs = klp_funcs_vmlinux, .nr_funcs = 1 },
};

#define KLP_NO_REPLACE
