/*
 * klp-rela MODULE.ko...: turn a built livepatch module's `.rela<S>` sections into the
 * `.klp.rela.<obj>.<S>` livepatch relocation sections of
 * Documentation/livepatch/module-elf-format.rst, in place.
 *
 * Why: kpatch-build and klp-build reach a patched object's non-exported symbols
 * through livepatch relocations, which the livepatch core writes when the object is
 * loaded; a compiler cannot emit them.  The module's source asks for them (as the
 * harness's templates do): a weak undefined symbol named `.klp.sym.<obj>.<name>,<pos>`,
 * a pointer to it alone in a data section S, so that `.rela<S>` holds its
 * relocations, and an empty section that is never loaded named `.klp.rela.<obj>.<S>`,
 * the name the relocation section takes.  This program does what the harness's
 * harness/modules/klprela.py does, for a machine with no Python: it patches bytes in
 * place (nothing moves, no string table grows):
 *   - `.rela<S>` takes the holder's name (its sh_name) and SHF_ALLOC |
 *     SHF_RELA_LIVEPATCH, so the module loader keeps it and leaves it to livepatch;
 *   - each symbol its relocations name takes st_shndx SHN_LIVEPATCH.
 *
 * Exit status: 0 converted (or nothing left to convert: a second run changes
 * nothing); 1 a module is not a 64-bit little-endian ELF file, or a relocation names
 * a symbol that is not an undefined `.klp.sym.*` one; 2 bad usage.
 */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SHF_RELA_LIVEPATCH
#define SHF_RELA_LIVEPATCH 0x00100000
#endif
#ifndef SHN_LIVEPATCH
#define SHN_LIVEPATCH 0xff20
#endif

#define SECTION_PREFIX ".klp.rela."
#define SYMBOL_PREFIX ".klp.sym."

static int fail(const char *path, const char *what)
{
	fprintf(stderr, "klp-rela: %s: %s\n", path, what);
	return 1;
}

static unsigned char *slurp(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	unsigned char *data = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
		data = malloc(n);
		if (data && fread(data, 1, n, f) != (size_t)n) {
			free(data);
			data = NULL;
		}
		*size = n;
	}
	fclose(f);
	return data;
}

/* A string of the section-name table, or NULL when the offset is outside it. */
static const char *name_at(const unsigned char *data, size_t size, const Elf64_Shdr *strtab,
			   Elf64_Word offset)
{
	if (strtab->sh_offset + offset >= size || offset >= strtab->sh_size)
		return NULL;
	return (const char *)data + strtab->sh_offset + offset;
}

/* Whether `holder` is `.klp.rela.<obj>.<target>`, <obj> 1-55 chars without a dot. */
static int names_target(const char *holder, const char *target)
{
	const char *obj = holder + strlen(SECTION_PREFIX);
	const char *dot = strchr(obj, '.');
	size_t hlen = strlen(holder), tlen = strlen(target);

	if (strncmp(holder, SECTION_PREFIX, strlen(SECTION_PREFIX)) || !dot)
		return 0;
	if (dot == obj || dot - obj > 55 || strcmp(dot + 1, target))
		return 0;
	return hlen > tlen && holder[hlen - tlen - 1] == '.';
}

static int convert(const char *path)
{
	size_t size = 0;
	unsigned char *data = slurp(path, &size);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)data;
	Elf64_Shdr *sh, *names, *symtab = NULL;
	int i, j, converted = 0, ret = 0;
	FILE *f;

	if (!data)
		return fail(path, strerror(errno ? errno : EIO));
	if (size < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shstrndx >= eh->e_shnum ||
	    eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > size) {
		free(data);
		return fail(path, "not a 64-bit little-endian ELF file");
	}
	sh = (Elf64_Shdr *)(data + eh->e_shoff);
	names = &sh[eh->e_shstrndx];
	for (i = 0; i < eh->e_shnum; i++)
		if (sh[i].sh_type == SHT_SYMTAB)
			symtab = &sh[i];
	if (!symtab || symtab->sh_offset + symtab->sh_size > size) {
		free(data);
		return fail(path, "no symbol table");
	}

	for (i = 0; i < eh->e_shnum && !ret; i++) {
		const char *rela = name_at(data, size, names, sh[i].sh_name);
		const char *target;
		Elf64_Rela *rel;
		int holder = -1;

		if (sh[i].sh_type != SHT_RELA || (sh[i].sh_flags & SHF_RELA_LIVEPATCH) || !rela ||
		    sh[i].sh_info >= eh->e_shnum)
			continue;
		target = name_at(data, size, names, sh[sh[i].sh_info].sh_name);
		if (!target || strncmp(rela, ".rela", 5) || strcmp(rela + 5, target))
			continue;
		for (j = 0; j < eh->e_shnum; j++) {
			const char *name = name_at(data, size, names, sh[j].sh_name);

			if (holder < 0 && name && !(sh[j].sh_flags & SHF_ALLOC) &&
			    names_target(name, target))
				holder = j;
		}
		if (holder < 0)
			continue;
		if (sh[i].sh_offset + sh[i].sh_size > size) {
			ret = fail(path, "a relocation section past the end of the file");
			break;
		}
		rel = (Elf64_Rela *)(data + sh[i].sh_offset);
		for (j = 0; j < (int)(sh[i].sh_size / sizeof(*rel)); j++) {
			size_t index = ELF64_R_SYM(rel[j].r_info);
			Elf64_Sym *sym = (Elf64_Sym *)(data + symtab->sh_offset) + index;
			const Elf64_Shdr *strtab = &sh[symtab->sh_link];
			const char *name;

			if ((index + 1) * sizeof(*sym) > symtab->sh_size) {
				ret = fail(path, "a relocation names a symbol past the symbol table");
				break;
			}
			name = name_at(data, size, strtab, sym->st_name);
			if (!name || strncmp(name, SYMBOL_PREFIX, strlen(SYMBOL_PREFIX)) ||
			    sym->st_shndx != SHN_UNDEF) {
				fprintf(stderr, "klp-rela: %s: %s relocates against '%s', not an "
					"undefined " SYMBOL_PREFIX "* symbol\n", path, rela,
					name ? name : "?");
				ret = 1;
				break;
			}
			sym->st_shndx = SHN_LIVEPATCH;
		}
		sh[i].sh_name = sh[holder].sh_name;
		sh[i].sh_flags |= SHF_ALLOC | SHF_RELA_LIVEPATCH;
		converted++;
	}

	if (!ret && converted) {
		f = fopen(path, "r+b");
		if (!f || fwrite(data, 1, size, f) != size || fclose(f))
			ret = fail(path, strerror(errno ? errno : EIO));
	}
	if (!ret)
		printf("klp-rela: %s: %d section(s) converted\n", path, converted);
	free(data);
	return ret;
}

int main(int argc, char **argv)
{
	int i, ret = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: klp-rela MODULE.ko...\n");
		return 2;
	}
	for (i = 1; i < argc; i++)
		ret |= convert(argv[i]);
	return ret;
}
