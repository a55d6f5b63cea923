// SPDX-License-Identifier: GPL-2.0
/*
 * kpost: a target module of tests/scenarios/bugs/06_kprobe_joins_kretprobe_disarm_warns.toml.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>

static bool hit;

/*
 * A kprobe with a post_handler on the entry of meminfo_proc_show(), as
 * test_klp_kprobe registers it: on x86 it is armed on kprobe_ipmodify_ops, which
 * needs the call site's IPMODIFY, as a livepatch does.
 */
static int pre_handler(struct kprobe *p, struct pt_regs *regs)
{
	WRITE_ONCE(hit, true);
	return 0;
}

static void post_handler(struct kprobe *p, struct pt_regs *regs, unsigned long flags)
{
}

static struct kprobe probe = {
	.symbol_name = "meminfo_proc_show",
	.pre_handler = pre_handler,
	.post_handler = post_handler,
};

static int __init kpost_init(void)
{
	int ret;

	ret = register_kprobe(&probe);
	if (ret)
		return ret;
	return 0;
}

static void __exit kpost_exit(void)
{
	unregister_kprobe(&probe);
	pr_info("%s on %s %s\n", "kprobe", "meminfo_proc_show",
		READ_ONCE(hit) ? "was hit" : "was never hit");
}

module_init(kpost_init);
module_exit(kpost_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Livepatch test: target module kpost");
