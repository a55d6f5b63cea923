// SPDX-License-Identifier: GPL-2.0
/*
 * kp_plain: a target module of tests/scenarios/coexist/03_livepatch_first_then_kprobes.toml.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>

static bool hit;

/*
 * A kprobe without post_handler on the entry of cmdline_proc_show(): on x86 it is
 * armed on kprobe_ftrace_ops, which shares the call site with a livepatch.
 */
static int pre_handler(struct kprobe *p, struct pt_regs *regs)
{
	WRITE_ONCE(hit, true);
	return 0;
}

static struct kprobe probe = {
	.symbol_name = "cmdline_proc_show",
	.pre_handler = pre_handler,
};

static int __init kp_plain_init(void)
{
	int ret;

	ret = register_kprobe(&probe);
	if (ret)
		return ret;
	return 0;
}

static void __exit kp_plain_exit(void)
{
	unregister_kprobe(&probe);
	pr_info("%s on %s %s\n", "kprobe", "cmdline_proc_show",
		READ_ONCE(hit) ? "was hit" : "was never hit");
}

module_init(kp_plain_init);
module_exit(kp_plain_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Livepatch test: target module kp_plain");
