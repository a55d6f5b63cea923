/*
 * The init and exit of a klp-build module, written to behave as the kernel's
 * scripts/livepatch/init.c of 7.3 does: the klp_object array follows
 * .init.klp_objects (found with klp_find_section_by_name()), each klp_func array
 * its object's klp_func_ext entries, callbacks copied; klp_patch.replace is true
 * unless klp-build --no-replace compiled it with -DKLP_NO_REPLACE; no states.
 */

static struct klp_patch *patch;

static int __init livepatch_mod_init(void)
{
	struct klp_object_ext *exts;
	struct klp_object *objs;
	unsigned int nr, i, j;
	size_t size;

	exts = klp_find_section_by_name(THIS_MODULE, ".init.klp_objects", &size);
	nr = size / sizeof(*exts);
	if (!nr)
		return -EINVAL;
	patch = kzalloc(sizeof(*patch), GFP_KERNEL);
	if (!patch)
		return -ENOMEM;
	objs = kcalloc(nr + 1, sizeof(*objs), GFP_KERNEL);
	if (!objs)
		goto nomem;
	patch->objs = objs;
	for (i = 0; i < nr; i++) {
		struct klp_func *funcs = kcalloc(exts[i].nr_funcs + 1, sizeof(*funcs), GFP_KERNEL);

		if (!funcs)
			goto nomem;
		for (j = 0; j < exts[i].nr_funcs; j++) {
			funcs[j].old_name = exts[i].funcs[j].old_name;
			funcs[j].new_func = exts[i].funcs[j].new_func;
			funcs[j].old_sympos = exts[i].funcs[j].sympos;
		}
		objs[i].name = exts[i].name;
		objs[i].funcs = funcs;
		memcpy(&objs[i].callbacks, &exts[i].callbacks, sizeof(struct klp_callbacks));
	}
	patch->mod = THIS_MODULE;
#ifdef KLP_NO_REPLACE
	patch->replace = false;
#else
	patch->replace = true;
#endif
	return klp_enable_patch(patch);
nomem:
	for (i = 0; patch->objs && patch->objs[i].funcs; i++)
		kfree(patch->objs[i].funcs);
	kfree(patch->objs);
	kfree(patch);
	return -ENOMEM;
}

static void __exit livepatch_mod_exit(void)
{
	struct klp_object *obj;

	klp_for_each_object_static(patch, obj)
		kfree(obj->funcs);
	kfree(patch->objs);
	kfree(patch);
}

module_init(livepatch_mod_init);
module_exit(livepatch_mod_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("Livepatch module");
