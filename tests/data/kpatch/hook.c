/*
 * The init and exit of a kpatch-build module, written to behave as kpatch's
 * livepatch patch hook does (kmod/patch/livepatch-patch-hook.c) on a kernel with
 * sympos, callbacks, klp_enable_patch() alone and `replace` (5.1 and later):
 *
 * - an object per distinct objname ("vmlinux": a NULL name), met in the order of
 *   .kpatch.funcs, then of the pre_patch, post_patch, pre_unpatch and post_unpatch
 *   callback sections; the hook keeps them on a list it adds to at the head, so the
 *   klp_object array holds them last met first, and each object's klp_func array
 *   holds its functions last first;
 * - a second callback of one kind for one object fails the init with EINVAL;
 * - klp_patch.replace is KLP_REPLACE_ENABLE, true unless kpatch-build --non-replace
 *   compiled the hook with -DKLP_REPLACE_ENABLE=false;
 * - no states.
 */

#ifndef KLP_REPLACE_ENABLE
#define KLP_REPLACE_ENABLE true
#endif

#define KPATCH_MAX_OBJECTS 16

struct hook_object {
	const char *name;
	int nr_funcs;
	struct klp_callbacks callbacks;
};

static struct klp_patch *lpatch;

static int hook_object(struct hook_object *objs, int *nr, const char *name)
{
	int i;

	for (i = 0; i < *nr; i++)
		if (!strcmp(objs[i].name, name))
			return i;
	if (*nr == KPATCH_MAX_OBJECTS)
		return -ENOMEM;
	objs[*nr].name = name;
	return (*nr)++;
}

static int hook_callbacks(struct hook_object *objs, int *nr, const struct kpatch_callback *cb,
			  int count, size_t slot)
{
	int i, index;
	void **field;

	for (i = 0; i < count; i++) {
		index = hook_object(objs, nr, cb[i].objname);
		if (index < 0)
			return index;
		field = (void **)((char *)&objs[index].callbacks + slot);
		if (*field) {
			pr_err("extra callback for object: %s\n", cb[i].objname);
			return -EINVAL;
		}
		*field = cb[i].callback;
	}
	return 0;
}

static void hook_free(struct klp_patch *patch)
{
	struct klp_object *obj;

	if (!patch)
		return;
	for (obj = patch->objs; obj && obj->funcs; obj++)
		kfree(obj->funcs);
	kfree(patch->objs);
	kfree(patch);
}

#define HOOK_CALLBACKS(when) \
	hook_callbacks(objs, &nr, kpatch_callbacks_##when.entry, \
		       ARRAY_SIZE(kpatch_callbacks_##when.entry), \
		       offsetof(struct klp_callbacks, when))

static int __init patch_init(void)
{
	static struct hook_object objs[KPATCH_MAX_OBJECTS];
	const int nr_funcs = ARRAY_SIZE(kpatch_funcs);
	struct klp_object *lobjects;
	struct klp_func *lfuncs;
	int i, j, k, nr = 0, ret;

	for (i = 0; i < nr_funcs; i++) {
		k = hook_object(objs, &nr, kpatch_funcs[i].objname);
		if (k < 0)
			return k;
		objs[k].nr_funcs++;
	}
	ret = HOOK_CALLBACKS(pre_patch) ?: HOOK_CALLBACKS(post_patch) ?:
	      HOOK_CALLBACKS(pre_unpatch) ?: HOOK_CALLBACKS(post_unpatch);
	if (ret)
		return ret;

	lpatch = kzalloc(sizeof(*lpatch), GFP_KERNEL);
	if (!lpatch)
		return -ENOMEM;
	lobjects = kcalloc(nr + 1, sizeof(*lobjects), GFP_KERNEL);
	if (!lobjects)
		goto nomem;
	lpatch->mod = THIS_MODULE;
	lpatch->objs = lobjects;
	lpatch->replace = KLP_REPLACE_ENABLE;

	for (i = 0; i < nr; i++) {
		const struct hook_object *obj = &objs[nr - 1 - i];

		lfuncs = kcalloc(obj->nr_funcs + 1, sizeof(*lfuncs), GFP_KERNEL);
		if (!lfuncs)
			goto nomem;
		lobjects[i].name = strcmp(obj->name, "vmlinux") ? obj->name : NULL;
		lobjects[i].funcs = lfuncs;
		lobjects[i].callbacks = obj->callbacks;
		for (j = 0, k = nr_funcs - 1; k >= 0; k--) {
			if (strcmp(kpatch_funcs[k].objname, obj->name))
				continue;
			lfuncs[j].old_name = kpatch_funcs[k].name;
			lfuncs[j].new_func = (void *)kpatch_funcs[k].new_addr;
			lfuncs[j].old_sympos = kpatch_funcs[k].sympos;
			j++;
		}
	}

	ret = klp_enable_patch(lpatch);
	if (ret)
		hook_free(lpatch);
	return ret;
nomem:
	hook_free(lpatch);
	return -ENOMEM;
}

static void __exit patch_exit(void)
{
	hook_free(lpatch);
}

module_init(patch_init);
module_exit(patch_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
