/*
 * klp-bpf attach fentry|fexit FUNC PIN: attach an empty BPF tracing program to the
 * vmlinux function FUNC and pin its link at PIN (a path under a bpf file system);
 * removing PIN detaches it.  klp-bpf detach PIN does that.
 *
 * Why: livepatch shares ftrace with BPF trampolines, and reported livepatch bugs
 * live where the two meet (an fexit trampoline on a sleeping task's stack makes the
 * stack unreliable; fexit on a livepatched function).  The guest has no bpftool or
 * libbpf, and a scenario needs only what this does, so: raw bpf(2), no library.
 *
 * The program is `r0 = 0; exit`: a fentry/fexit program must return 0.  Its
 * attach point is FUNC's BTF id, read from /sys/kernel/btf/vmlinux.  The trampoline
 * BPF builds for an fexit program calls FUNC itself (BPF_TRAMP_F_CALL_ORIG), so it
 * stays on the stack of a task inside FUNC; an fentry-only trampoline returns
 * before FUNC runs.
 *
 * Exit status: 0 attached/detached; 1 the kernel refused (its errno and the
 * verifier's log on stderr); 2 bad usage or FUNC not in BTF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/btf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BTF_PATH "/sys/kernel/btf/vmlinux"
#define BPF_FS "/sys/fs/bpf"
#define BPF_FS_MAGIC 0xcafe4a11

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

static char *read_file(const char *path, size_t *len)
{
	size_t cap = 1 << 22, used = 0;
	char *buf = malloc(cap);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (!buf || fd < 0)
		return NULL;
	while ((n = read(fd, buf + used, cap - used)) > 0) {
		used += n;
		if (used == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				return NULL;
		}
	}
	close(fd);
	*len = used;
	return n < 0 ? NULL : buf;
}

/* The bytes that follow a btf_type of this kind (include/uapi/linux/btf.h). */
static size_t extra_size(const struct btf_type *t)
{
	unsigned int vlen = BTF_INFO_VLEN(t->info);

	switch (BTF_INFO_KIND(t->info)) {
	case BTF_KIND_INT:
	case BTF_KIND_VAR:
	case 17: /* BTF_KIND_DECL_TAG */
		return 4;
	case BTF_KIND_ARRAY:
		return sizeof(struct btf_array);
	case BTF_KIND_STRUCT:
	case BTF_KIND_UNION:
		return vlen * sizeof(struct btf_member);
	case BTF_KIND_ENUM:
		return vlen * sizeof(struct btf_enum);
	case BTF_KIND_FUNC_PROTO:
		return vlen * sizeof(struct btf_param);
	case BTF_KIND_DATASEC:
		return vlen * sizeof(struct btf_var_secinfo);
	case 19: /* BTF_KIND_ENUM64: name_off, val_lo32, val_hi32 */
		return vlen * 12;
	default: /* PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG */
		return 0;
	}
}

/* FUNC's BTF type id in vmlinux, or 0. */
static unsigned int btf_func_id(const char *func)
{
	size_t len, off;
	char *data = read_file(BTF_PATH, &len);
	const struct btf_header *hdr = (const void *)data;
	const char *types, *strs;
	unsigned int id = 1;

	if (!data || len < sizeof(*hdr) || hdr->magic != BTF_MAGIC)
		return 0;
	types = data + hdr->hdr_len + hdr->type_off;
	strs = data + hdr->hdr_len + hdr->str_off;
	for (off = 0; off + sizeof(struct btf_type) <= hdr->type_len; id++) {
		const struct btf_type *t = (const void *)(types + off);

		if (BTF_INFO_KIND(t->info) == BTF_KIND_FUNC && t->name_off < hdr->str_len &&
		    !strcmp(strs + t->name_off, func))
			return id;
		off += sizeof(*t) + extra_size(t);
	}
	return 0;
}

static int load_prog(unsigned int btf_id, int attach_type)
{
	static char log[65536];
	struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr attr;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_TRACING;
	attr.expected_attach_type = attach_type;
	attr.insns = (uintptr_t)insns;
	attr.insn_cnt = 2;
	attr.license = (uintptr_t) "GPL";
	attr.attach_btf_id = btf_id;
	attr.log_buf = (uintptr_t)log;
	attr.log_size = sizeof(log);
	attr.log_level = 1;
	fd = sys_bpf(BPF_PROG_LOAD, &attr);
	if (fd < 0) {
		int err = errno;

		/* the verifier's log first: the last line names the errno */
		fprintf(stderr, "%sklp-bpf: loading the program: %s\n", log, strerror(err));
	}
	return fd;
}

/* A bpf file system at BPF_FS, mounted once: each mount(2) of "bpf" makes a new,
 * empty instance over the last, which would hide the pins made before it. */
static int mount_bpf_fs(void)
{
	struct statfs fs;

	if (statfs(BPF_FS, &fs) == 0 && fs.f_type == BPF_FS_MAGIC)
		return 0;
	mkdir(BPF_FS, 0755);
	if (mount("bpf", BPF_FS, "bpf", 0, NULL) == 0)
		return 0;
	fprintf(stderr, "klp-bpf: mounting %s: %s\n", BPF_FS, strerror(errno));
	return 1;
}

static int attach(const char *kind, const char *func, const char *pin)
{
	int attach_type, prog, link;
	unsigned int id;
	union bpf_attr attr;

	if (!strcmp(kind, "fentry"))
		attach_type = BPF_TRACE_FENTRY;
	else if (!strcmp(kind, "fexit"))
		attach_type = BPF_TRACE_FEXIT;
	else {
		fprintf(stderr, "klp-bpf: unknown program kind %s (fentry or fexit)\n", kind);
		return 2;
	}
	id = btf_func_id(func);
	if (!id) {
		fprintf(stderr, "klp-bpf: %s is not a function in %s\n", func, BTF_PATH);
		return 2;
	}
	prog = load_prog(id, attach_type);
	if (prog < 0)
		return 1;
	memset(&attr, 0, sizeof(attr));
	attr.raw_tracepoint.prog_fd = prog;
	link = sys_bpf(BPF_RAW_TRACEPOINT_OPEN, &attr);
	if (link < 0) {
		fprintf(stderr, "klp-bpf: attaching %s to %s: %s\n", kind, func, strerror(errno));
		return 1;
	}
	if (mount_bpf_fs())
		return 1;
	memset(&attr, 0, sizeof(attr));
	attr.pathname = (uintptr_t)pin;
	attr.bpf_fd = link;
	if (sys_bpf(BPF_OBJ_PIN, &attr) < 0) {
		fprintf(stderr, "klp-bpf: pinning at %s: %s\n", pin, strerror(errno));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "attach"))
		return attach(argv[2], argv[3], argv[4]);
	if (argc == 3 && !strcmp(argv[1], "detach")) {
		if (unlink(argv[2]) == 0)
			return 0;
		fprintf(stderr, "klp-bpf: detaching %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	fprintf(stderr, "usage: klp-bpf attach fentry|fexit FUNC PIN | klp-bpf detach PIN\n");
	return 2;
}
