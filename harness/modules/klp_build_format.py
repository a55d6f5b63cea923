"""The structure of a livepatch module built by the kernel's klp-build, read from its
sections.

klp-build (scripts/livepatch/klp-build, objtool `klp diff` and `klp post-link`, in
the kernel's source from 6.19) links the changed functions of each diffed object
with scripts/livepatch/init.c, whose init builds the `struct klp_patch` at load time
from two sections objtool writes (include/linux/livepatch_external.h,
tools/objtool/include/objtool/klp.h):

- the objects: a `struct klp_object_ext` per diffed binary (vmlinux.o or a module),
  64 bytes: name (relocated to a string; none for vmlinux), funcs (relocated into the
  funcs section), the four callbacks of `struct klp_callbacks` (relocated when set by
  KLP_*_CALLBACK()), nr_funcs (bytes);
- the funcs: a `struct klp_func_ext` per changed function, 24 bytes: old_name and
  new_func (relocated), sympos (bytes);
- the livepatch relocations `klp post-link` makes of `__klp_relocs`
  (`.klp.rela.<obj>.<section>`, read by harness.modules.klprela like anyone's).

Versions, told by the sections' names: `.init.klp_objects` / `.init.klp_funcs` (7.x:
init.c finds them with klp_find_section_by_name()), `__klp_objects` / `__klp_funcs`
(the first releases: init.c walks `__start_klp_objects`..`__stop_klp_objects`).  The
init keeps the order of both arrays, sets no states (a TODO in init.c) and sets
`replace` from the preprocessor (harness.modules.patch_init).  Refused in one line: an
object `klp post-link` has not converted (`__klp_relocs` and no livepatch relocation
section: post-link leaves `__klp_relocs` in place once it has written them), and
sections whose sizes, counts or relocations are not the layout.
"""

from __future__ import annotations

from pathlib import Path

from harness.host.inputs import KO_LIMIT, foreign, read_input
from harness.modules.elf import CALLBACK_ORDER as CALLBACKS
from harness.modules.elf import MAX_ENTRIES, BadKo, KoFile, KoFunc, KoObject, KoPatch, Target
from harness.modules.klprela import SHF_RELA_LIVEPATCH
from harness.modules.layout import KlpLayout
from harness.modules.patch_init import replace_set_by_init
from harness.symbols.data import ELF_ERRORS

TOOL = "klp-build's init.c"
# (objects section, funcs section) -> the version they mean
VERSIONS = {
    (".init.klp_objects", ".init.klp_funcs"): "klp-build 7.x (.init.klp_objects, .init.klp_funcs)",
    ("__klp_objects", "__klp_funcs"): "klp-build 6.19 (__klp_objects, __klp_funcs)",
}
# objtool's intermediate section (`.<objname>` after it in later versions): `klp post-link`
# writes the .klp.rela sections from it and leaves it in place
RELOCS = "__klp_relocs"
# struct klp_object_ext and struct klp_func_ext (livepatch_external.h)
OBJECT_SIZE, OBJECT_NAME, OBJECT_FUNCS, OBJECT_CALLBACKS, OBJECT_NR_FUNCS = 64, 0, 8, 16, 56
FUNC_SIZE, FUNC_OLD_NAME, FUNC_NEW_FUNC, FUNC_SYMPOS = 24, 0, 8, 16


def _indexes(ko: KoFile) -> dict[str, int]:
    return {s.name: i for i, s in enumerate(ko.elf.iter_sections())}


def detect(ko: KoFile) -> str | None:
    """The format version of a klp-build module (None: not one); refuses one that is
    not finished or not laid out as this reader knows."""
    found = _indexes(ko)
    names = next((pair for pair in VERSIONS if pair[0] in found or pair[1] in found), None)
    if names is None:
        return None
    path = ko.path
    relocs = any(name == RELOCS or name.startswith(RELOCS + ".") for name in found)
    converted = any(s["sh_flags"] & SHF_RELA_LIVEPATCH for s in ko.elf.iter_sections())
    if relocs and not converted:
        raise BadKo(f"{path}: {RELOCS} not converted: `objtool klp post-link` has not run")
    for name, entry in zip(names, (OBJECT_SIZE, FUNC_SIZE), strict=True):
        if name not in found:
            raise BadKo(f"{path}: {names[0]} and {names[1]} go together; no {name}")
        size = ko.elf.get_section(found[name])["sh_size"]
        if size % entry or size // entry > MAX_ENTRIES:
            raise BadKo(f"{path}: {name} of {size} bytes is not an array of {entry}-byte entries")
    if ko.elf.get_section(found[names[0]])["sh_size"] == 0:
        raise BadKo(f"{path}: {names[0]} is empty: {TOOL} refuses to load it (nothing to patch)")
    return VERSIONS[names]


def read_patch(path: Path, layout: KlpLayout) -> KoPatch:
    """The klp_patch the klp-build module at `path` builds at load time."""
    ko = KoFile(path, read_input(path, KO_LIMIT, "module"))
    with foreign(path, "ELF file", ELF_ERRORS, BadKo):
        version = detect(ko)
        if version is None:
            raise BadKo(f"{path}: no klp_objects section: not a klp-build module")
        return _read(ko, version, layout)


def _read(ko: KoFile, version: str, layout: KlpLayout) -> KoPatch:
    found = _indexes(ko)
    objects_name, funcs_name = next(pair for pair, v in VERSIONS.items() if v == version)
    objs, funcs = found[objects_name], found[funcs_name]
    funcs_size = ko.elf.get_section(funcs)["sh_size"]
    objects = []
    for base in range(0, ko.elf.get_section(objs)["sh_size"], OBJECT_SIZE):
        name_at = Target(objs, base + OBJECT_NAME)
        name = ko.pointer(name_at)
        if name is None and ko.has_pointer(name_at):
            raise BadKo(f"{ko.path}: {objects_name}: object {base // OBJECT_SIZE}'s name is lost")
        first = ko.pointer(Target(objs, base + OBJECT_FUNCS))
        count = ko.integer(Target(objs, base + OBJECT_NR_FUNCS), 4)
        if first is None or first.section != funcs or first.offset + count * FUNC_SIZE > funcs_size:
            raise BadKo(
                f"{ko.path}: {objects_name}: object {base // OBJECT_SIZE}'s {count} funcs "
                f"are not in {funcs_name}"
            )
        objects.append(
            KoObject(
                name=ko.string(name) if name is not None else None,
                funcs=tuple(_func(ko, first.offset + i * FUNC_SIZE, funcs) for i in range(count)),
                callbacks=frozenset(
                    callback
                    for i, callback in enumerate(CALLBACKS)
                    if ko.has_pointer(Target(objs, base + OBJECT_CALLBACKS + 8 * i))
                ),
            )
        )
    return KoPatch(objects=tuple(objects), states=(), replace=replace_set_by_init(ko, layout, TOOL))


def _func(ko: KoFile, offset: int, funcs: int) -> KoFunc:
    name = ko.pointer(Target(funcs, offset + FUNC_OLD_NAME))
    if name is None:
        raise BadKo(f"{ko.path}: a klp_func_ext without old_name")
    new = ko.pointer(Target(funcs, offset + FUNC_NEW_FUNC))
    return KoFunc(
        name=ko.string(name),
        sympos=ko.integer(Target(funcs, offset + FUNC_SYMPOS), 8),
        new_func=ko.symbol_at(new) if new is not None else "",
    )
