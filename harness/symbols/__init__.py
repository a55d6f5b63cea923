"""A kernel profile's own symbol data: which functions vmlinux and its modules define
(in kallsyms order, which is what a klp_func's `sympos` counts) and which of them
ftrace can patch.  Scenarios that patch real functions are checked against it before
anything is built or booted (`harness.symbols.validate`)."""
