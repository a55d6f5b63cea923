# Helpers the harness uses on the guest's serial console (harness/guest/console.py).

# __klp_serial NONCE CMD: run CMD in a subshell with stdin from /dev/null; print its
# stdout, then its stderr, then its exit code, between markers built from NONCE.
# The markers are never typed in full, so the console's echo of the command line
# cannot be mistaken for them.  Only builtins besides the subshell: an exec costs
# ~30 ms in a TCG guest.
__klp_serial() {
    local rc err=
    printf '%s:begin\n' "$1"
    (eval "$2") </dev/null 2>/tmp/.klp-serial-stderr
    rc=$?
    IFS= read -r -d '' err </tmp/.klp-serial-stderr
    printf '\n%s:stderr\n%s\n%s:end %d\n' "$1" "$err" "$1" "$rc"
}
