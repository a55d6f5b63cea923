/*
 * klp-load NAME FILE [PARAM...]: load a module the way `modprobe NAME [PARAM...]`
 * does for the harness's modules, as one small static program.
 *
 * Why: under TCG every dynamically linked program costs tens of milliseconds to
 * start, and kmod's modprobe (linked with libcrypto, liblzma, libzstd) most of all:
 * ~85 ms before it loads anything, on every load step.  busybox insmod is static,
 * but it retries a failed finit_module with init_module, so a livepatch whose init
 * fails would run twice.  This does what modprobe does for a module without
 * dependencies, no more:
 *   - a module that is already live or coming is left alone, exit 0
 *     (kmod: module_is_inkernel() before insertion);
 *   - otherwise one finit_module(2) with the parameters joined by spaces;
 *   - on failure, modprobe's message on stderr (kmod tools/modprobe.c, insmod()),
 *     exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int in_kernel(const char *name)
{
	char path[256], state[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/%s/initstate", name);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (!fgets(state, sizeof(state), f))
		state[0] = '\0';
	fclose(f);
	return !strcmp(state, "live\n") || !strcmp(state, "coming\n");
}

static const char *kmod_strerror(int err)
{
	switch (err) {
	case EEXIST:
		return "Module already in kernel";
	case ENOENT:
		return "Unknown symbol in module, or unknown parameter (see dmesg)";
	default:
		return strerror(err);
	}
}

int main(int argc, char **argv)
{
	char params[4096] = "";
	size_t used = 0;
	int fd, i, err;

	if (argc < 3) {
		fprintf(stderr, "usage: klp-load NAME FILE [PARAM...]\n");
		return 2;
	}
	if (in_kernel(argv[1]))
		return 0;
	for (i = 3; i < argc; i++) {
		int n = snprintf(params + used, sizeof(params) - used, "%s%s",
				 used ? " " : "", argv[i]);
		if (n < 0 || (size_t)n >= sizeof(params) - used) {
			fprintf(stderr, "klp-load: parameters too long\n");
			return 2;
		}
		used += n;
	}
	fd = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || syscall(SYS_finit_module, fd, params, 0) != 0) {
		err = errno;
		fprintf(stderr, "modprobe: ERROR: could not insert '%s': %s\n", argv[1],
			kmod_strerror(err));
		return 1;
	}
	return 0;
}
