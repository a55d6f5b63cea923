"""The structure of a livepatch module built by kpatch-build, read from its sections.

kpatch-build (dynup/kpatch, Debian's `kpatch-build`) links the changed functions with
its patch hook, which builds the `struct klp_patch` at load time
(kmod/patch/livepatch-patch-hook.c) from sections create-diff-object writes
(kmod/patch/kpatch-patch.h, kpatch.lds.S; the same from kpatch 0.4 to 0.9.11):

- `.kpatch.funcs`: a `struct kpatch_patch_func` per replaced function, 56 bytes:
  new_addr (the replacement, relocated), new_size, old_addr, old_size, sympos (bytes),
  name and objname (relocated to `.kpatch.strings`; "vmlinux" for the kernel);
- `.kpatch.callbacks.{pre_patch,post_patch,pre_unpatch,post_unpatch}`: a
  {callback, objname} pair per KPATCH_*_CALLBACK(), 16 bytes, then the 8 zero bytes
  kpatch.lds pads each such section with;
- the livepatch relocations create-klp-module writes (`.klp.rela.<obj>.<section>`,
  read by harness.modules.klprela like anyone's).

The hook makes an object per objname, in the order first met (funcs, then the four
callback sections), on a list it adds to at the head: the klp_object array holds them
last met first, each klp_func array its functions last first.  A second callback of
one kind for one object fails its init (EINVAL): refused here.  It sets no states;
`replace` is KLP_REPLACE_ENABLE, compiled into the hook (harness.modules.patch_init).

Refused in one line: the 48-byte kpatch_patch_func of kpatch before 0.4 (no sympos),
a kpatch core-module patch (`.kpatch.dynrelas`: loaded by kpatch.ko, not livepatch),
an intermediate object create-klp-module has not converted (`.kpatch.symbols`,
`.kpatch.relocations`), and sections whose sizes or relocations are not the layout.
"""

from __future__ import annotations

from pathlib import Path

from elftools.elf.sections import Section

from harness.host.inputs import KO_LIMIT, foreign, read_input
from harness.modules.elf import MAX_ENTRIES, BadKo, KoFile, KoFunc, KoObject, KoPatch, Target
from harness.modules.layout import KlpLayout
from harness.modules.patch_init import replace_set_by_init
from harness.scenario.types import Callback
from harness.symbols.data import ELF_ERRORS

FUNCS = ".kpatch.funcs"
TOOL = "kpatch-build's patch hook"
VERSION = "kpatch-build 0.4-0.9.11 (.kpatch.funcs of 56-byte kpatch_patch_func, with sympos)"
# struct kpatch_patch_func (kpatch-patch.h)
FUNC_SIZE, FUNC_NEW_ADDR, FUNC_SYMPOS, FUNC_NAME, FUNC_OBJNAME = 56, 0, 32, 40, 48
OLD_FUNC_SIZE, OLD_FUNC_NAME, OLD_FUNC_OBJNAME = 48, 32, 40  # before sympos
CALLBACK_SIZE, CALLBACK_OBJNAME = 16, 8
CALLBACKS = (
    (".kpatch.callbacks.pre_patch", Callback.PRE_PATCH),
    (".kpatch.callbacks.post_patch", Callback.POST_PATCH),
    (".kpatch.callbacks.pre_unpatch", Callback.PRE_UNPATCH),
    (".kpatch.callbacks.post_unpatch", Callback.POST_UNPATCH),
)
CORE_MODULE = (".kpatch.dynrelas", ".kpatch.checksum")
INTERMEDIATE = (".kpatch.symbols", ".kpatch.relocations", ".kpatch.arch")
VMLINUX = "vmlinux"


def sections(ko: KoFile) -> dict[str, tuple[int, Section]]:
    return {s.name: (i, s) for i, s in enumerate(ko.elf.iter_sections())}


def detect(ko: KoFile) -> str | None:
    """The format version of a kpatch-build module (None: not one); refuses the
    variants this reader does not read."""
    found = sections(ko)
    if FUNCS not in found:
        return None
    path = ko.path
    if any(name in found for name in CORE_MODULE):
        raise BadKo(f"{path}: a kpatch core-module patch (.kpatch.dynrelas): kpatch.ko loads it")
    leftover = [name for name in INTERMEDIATE if name in found]
    if leftover:
        raise BadKo(f"{path}: {leftover[0]} left: create-klp-module has not converted it")
    index, funcs = found[FUNCS]
    size = funcs["sh_size"]
    if _laid_out(ko, index, size, FUNC_SIZE, (FUNC_NEW_ADDR, FUNC_NAME, FUNC_OBJNAME)):
        return VERSION
    if _laid_out(ko, index, size, OLD_FUNC_SIZE, (0, OLD_FUNC_NAME, OLD_FUNC_OBJNAME)):
        raise BadKo(f"{path}: 48-byte kpatch_patch_func (no sympos, kpatch before 0.4): not read")
    raise BadKo(f"{path}: {FUNCS} of {size} bytes is not an array of kpatch_patch_func")


def _laid_out(ko: KoFile, section: int, size: int, entry: int, pointers: tuple[int, ...]) -> bool:
    """Whether `size` bytes are whole entries with a relocated pointer at each offset."""
    if size == 0 or size % entry or size // entry > MAX_ENTRIES:
        return False
    return all(
        ko.has_pointer(Target(section, base + field))
        for base in range(0, size, entry)
        for field in pointers
    )


def read_patch(path: Path, layout: KlpLayout) -> KoPatch:
    """The klp_patch the kpatch-build module at `path` builds at load time."""
    ko = KoFile(path, read_input(path, KO_LIMIT, "module"))
    with foreign(path, "ELF file", ELF_ERRORS, BadKo):
        if detect(ko) is None:
            raise BadKo(f"{path}: no {FUNCS} section: not a kpatch-build module")
        return _read(ko, layout)


class _Object:
    def __init__(self, name: str) -> None:
        self.name = name
        self.funcs: list[KoFunc] = []
        self.callbacks: set[Callback] = set()


def _read(ko: KoFile, layout: KlpLayout) -> KoPatch:
    found = sections(ko)
    objects: dict[str, _Object] = {}
    index, funcs = found[FUNCS]
    for base in range(0, funcs["sh_size"], FUNC_SIZE):
        objname = _string(ko, Target(index, base + FUNC_OBJNAME))
        new = ko.pointer(Target(index, base + FUNC_NEW_ADDR))
        func = KoFunc(
            name=_string(ko, Target(index, base + FUNC_NAME)),
            sympos=ko.integer(Target(index, base + FUNC_SYMPOS), 8),
            new_func=ko.symbol_at(new) if new is not None else "",
        )
        objects.setdefault(objname, _Object(objname)).funcs.append(func)
    for section_name, callback in CALLBACKS:
        if section_name not in found:
            continue
        index, section = found[section_name]
        count = section["sh_size"] // CALLBACK_SIZE
        for base in range(0, min(count, MAX_ENTRIES) * CALLBACK_SIZE, CALLBACK_SIZE):
            if not ko.has_pointer(Target(index, base)):
                raise BadKo(f"{ko.path}: {section_name}: entry {base // 16} has no callback")
            objname = _string(ko, Target(index, base + CALLBACK_OBJNAME))
            obj = objects.setdefault(objname, _Object(objname))
            if callback in obj.callbacks:
                raise BadKo(
                    f"{ko.path}: two {callback.value} callbacks for {objname}: "
                    f"{TOOL} refuses to load it (EINVAL)"
                )
            obj.callbacks.add(callback)
    return KoPatch(
        objects=tuple(
            KoObject(
                name=None if obj.name == VMLINUX else obj.name,
                funcs=tuple(reversed(obj.funcs)),
                callbacks=frozenset(obj.callbacks),
            )
            for obj in reversed(objects.values())
        ),
        states=(),
        replace=replace_set_by_init(ko, layout, TOOL),
    )


def _string(ko: KoFile, at: Target) -> str:
    pointer = ko.pointer(at)
    if pointer is None:
        raise BadKo(f"{ko.path}: no string at offset {at.offset} of section {at.section}")
    return ko.string(pointer)
