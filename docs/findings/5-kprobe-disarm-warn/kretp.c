// SPDX-License-Identifier: GPL-2.0
/*
 * kretp: a target module of tests/scenarios/bugs/06_kprobe_joins_kretprobe_disarm_warns.toml.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>

static bool hit;

/*
 * A kretprobe on meminfo_proc_show(): its entry kprobe has no post_handler, so on
 * x86 it is armed on kprobe_ftrace_ops, which is not IPMODIFY.
 */
static int ret_handler(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	WRITE_ONCE(hit, true);
	return 0;
}

static struct kretprobe probe = {
	.kp.symbol_name = "meminfo_proc_show",
	.handler = ret_handler,
	.maxactive = 8,
};

static int __init kretp_init(void)
{
	int ret;

	ret = register_kretprobe(&probe);
	if (ret)
		return ret;
	return 0;
}

static void __exit kretp_exit(void)
{
	unregister_kretprobe(&probe);
	pr_info("%s on %s %s\n", "kretprobe", "meminfo_proc_show",
		READ_ONCE(hit) ? "was hit" : "was never hit");
}

module_init(kretp_init);
module_exit(kretp_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Livepatch test: target module kretp");
