// SPDX-License-Identifier: GPL-2.0
/*
 * crashmod: provokes one kernel report from its init function, chosen by `what=`,
 * so the console logs in tests/data/ are real output of the profiles' kernels.
 * Built and loaded by tests/data/crashmod/record.py; never part of a scenario.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/delay.h>
#include <linux/preempt.h>
#include <linux/string.h>

static char *what = "";
module_param(what, charp, 0);

static const int crashmod_ro = 1;

static int __init crashmod_init(void)
{
	pr_info("crashmod: %s\n", what);
	if (!strcmp(what, "ud2")) {
		asm volatile("ud2");
	} else if (!strcmp(what, "double-free")) {
		char *p = kmalloc(8, GFP_KERNEL);
		kfree(p);
		kfree(p);
	} else if (!strcmp(what, "redzone")) {
		char *p = kmalloc(8, GFP_KERNEL);
		int i;

		OPTIMIZER_HIDE_VAR(p); /* no compile-time object size: no fortify check */
		for (i = 8; i < 12; i++)
			p[i] = 0xaa; /* past the object: its right redzone */
		kfree(p);
	} else if (!strcmp(what, "atomic-sleep")) {
		preempt_disable();
		msleep(10);
		preempt_enable();
	} else if (!strcmp(what, "soft-lockup")) {
		preempt_disable();
		mdelay(6000);
		preempt_enable();
	} else if (!strcmp(what, "ro-write")) {
		*(volatile int *)&crashmod_ro = 2;
	} else if (!strcmp(what, "null")) {
		*(volatile int *)NULL = 1;
	} else if (!strcmp(what, "gpf")) {
		*(volatile long *)0xdead000000000000UL = 1;
	} else if (!strcmp(what, "bug")) {
		BUG();
	} else if (!strcmp(what, "warn")) {
		WARN_ON(1);
	}
	return -EINVAL; /* nothing to keep loaded */
}

module_init(crashmod_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klp-harness: provoke kernel reports for recorded test logs");
