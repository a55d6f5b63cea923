// SPDX-License-Identifier: GPL-2.0
/*
 * klp_fc_target: a target module of tests/scenarios/bugs/07_failed_coming_leaves_klp_relocs.toml.
 *
 * Reading /proc/klp_fc_target/<func> calls <func>() and prints what it returned:
 * "<func>: orig" from the original, "<patch>: this has been live patched" from a
 * livepatch's replacement.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/delay.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>

/*
 * __noipa: each function exists once under its own name and every call enters it
 * through its ftrace location, whatever a replacement clobbers.  A caller passing
 * `park` makes it sleep while *park is true.
 */
static noinline __noipa const char *alpha(const bool *park)
{
	while (park && READ_ONCE(*park))
		msleep(20);
	return "alpha: orig";
}

typedef const char *(*target_fn)(const bool *park);

static target_fn target_funcs[] = {
	alpha,
};

static int target_show(struct seq_file *m, void *v)
{
	const target_fn *fn = m->private;

	seq_printf(m, "%s\n", (*fn)(NULL));
	return 0;
}

static struct proc_dir_entry *target_dir;

static int target_proc_init(void)
{
	target_dir = proc_mkdir(KBUILD_MODNAME, NULL);
	if (!target_dir)
		return -ENOMEM;
	if (!proc_create_single_data("alpha", 0444, target_dir, target_show,
				     &target_funcs[0]))
		goto err;
	return 0;
err:
	proc_remove(target_dir);
	return -ENOMEM;
}

static int __init klp_fc_target_init(void)
{
	int ret;

	pr_info("%s\n", __func__);
	ret = target_proc_init();
	if (ret) {
		return ret;
	}
	return 0;
}

static void __exit klp_fc_target_exit(void)
{
	proc_remove(target_dir);
	pr_info("%s\n", __func__);
}

module_init(klp_fc_target_init);
module_exit(klp_fc_target_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Livepatch test: target module klp_fc_target");
