#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Reproducer exported by klp-harness from
# tests/scenarios/bugs/07_failed_coming_leaves_klp_relocs.toml: A patch with klp
# relocations whose pre_patch callback fails at its target's coming keeps the
# relocations written: the target's next load is refused with ENOEXEC on every
# profile, until the patch is gone.
#
# Usage, as root, after `make`:  sh run.sh [-k]
# Each step prints what the reference model expects on this kernel's series and what
# happened; the first difference ends the run with exit status 1 (-k: go on to the
# last step, then exit 1).  The modules, livepatches and BPF programs it loads are
# removed at the end, unless the kernel warned (on 6.1.192, removing what is left
# after its BPF trampoline WARN oopses).  It turns on livepatch's debug messages, as the kernel's
# selftests do (the expected lines include them).

set -u
export LC_ALL=C
cd "$(dirname "$0")" || exit 2
MODULES="klp_fc_target klp_fc_patch"
PATCHES="klp_fc_patch"
PROGRAMS=""
KEEP_GOING=0
[ "${1:-}" = -k ] && KEEP_GOING=1
[ "$(id -u)" = 0 ] || { echo "run.sh: run it as root" >&2; exit 2; }

release=$(uname -r)
major=${release%%.*}
rest=${release#*.}
minor=${rest%%[!0-9]*}
version=$((major * 1000 + minor))
EXPECTED= SERIES=
[ $version -ge 6001 ] && SERIES=6.1 EXPECTED=expected-6.1
[ $version -ge 6012 ] && SERIES=6.12 EXPECTED=expected-6.12
[ $version -ge 7003 ] && SERIES=7.3 EXPECTED=expected-7.3
[ -n "$EXPECTED" ] || { echo "run.sh: no expectation for $release" >&2; exit 2; }
echo "kernel $release: expecting what the model predicts for $SERIES ($EXPECTED)"

DYNDBG=/sys/kernel/debug/dynamic_debug/control
[ -e "$DYNDBG" ] || mount -t debugfs none /sys/kernel/debug 2>/dev/null
if ! grep -q '^kernel/livepatch/.* =p ' "$DYNDBG" 2>/dev/null; then
	RESTORE_DYNDBG=1
fi
echo 'file kernel/livepatch/* +p' > "$DYNDBG" 2>/dev/null ||
	echo "run.sh: cannot turn on livepatch's debug messages: expect differences" >&2
echo 'func klp_try_switch_task -p' > "$DYNDBG" 2>/dev/null
TMP=$(mktemp -d) || exit 2
: > "$TMP/files"

cleanup() {
	if [ -n "${HURT:-}" ]; then
		echo "the kernel warned (dmesg): nothing is removed from it; reboot it"
		rm -rf "$TMP"
		return
	fi
	for p in $PROGRAMS; do rm -f "/sys/fs/bpf/klp-repro-$p"; done
	for p in $PATCHES; do
		[ -e "/sys/kernel/livepatch/$p/enabled" ] && echo 0 > "/sys/kernel/livepatch/$p/enabled"
	done
	for m in $MODULES; do
		n=0
		while [ -e "/sys/module/$m" ] && [ $n -lt 100 ]; do
			rmmod "$m" 2>/dev/null || sleep 0.1 2>/dev/null || sleep 1
			n=$((n + 1))
		done
	done
	[ -n "${RESTORE_DYNDBG:-}" ] && echo 'file kernel/livepatch/* -p' > "$DYNDBG" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nap() { sleep 0.1 2>/dev/null || sleep 1; }

# a kernel report's lines; the log's time stamps and caller ids; its warnings, as
# `report: warning at FILE:LINE FUNCTION` (6.x: "WARNING: CPU: 0 PID: 1 at FILE:LINE
# FUNC+0x1/0x2", 7.x: "WARNING: FILE:LINE at FUNC+0x1/0x2, CPU#0: comm/1")
REPORTS='/^-+\[ cut here \]-+$/ { skip = 1 } !skip { print } /^---\[ end trace/ { skip = 0 }'
STAMP='s/^\[[ 0-9.]*\] //'
CALLER='s/^\[ *[CT][0-9]*\] //'
WARNING='s/^.*WARNING: CPU: [0-9]* PID: [0-9]* at \([^ ]*\) \([^+ ]*\).*/report: warning at \1 \2/p'
WARNING2='s/^.*WARNING: \([^ ]*:[0-9]*\) at \([^+ ]*\).*/report: warning at \1 \2/p'

# expected(step): the expectation of a step, as observed() writes what happened
expected() {
	awk -v head="@@ step $1:" 'index($0, head) == 1 { p = 1; print; next } /^@@ / { p = 0 } p' \
		"$EXPECTED"
}

load_module() {
	m=$1; shift
	if [ -e "/sys/module/$m" ]; then result=ok; return; fi   # as modprobe does
	if out=$(insmod "./$m.ko" "$@" 2>&1); then result=ok; else result="fails: ${out##*: }"; fi
}

unload_module() {
	if grep -q '^result: ok' "$TMP/expected"; then   # let a freed livepatch drop its reference
		n=0
		while [ -e "/sys/module/$1/refcnt" ] && [ "$(cat "/sys/module/$1/refcnt")" != 0 ] &&
			[ $n -lt 600 ]; do nap; n=$((n + 1)); done
	fi
	if rmmod "$1" 2>/dev/null; then result=ok; else result=fails; fi
}

write_file() {
	if (echo "$1" > "$2") 2>/dev/null; then result=ok; else result=fails; fi
}

call_function() {
	head -n 1 "$1" > /dev/null 2>&1
	result=ok
}

attach_bpf() {
	if ./klp-bpf attach "$1" "$2" "/sys/fs/bpf/klp-repro-$3" 2>/dev/null; then
		result=ok
	else
		result=fails
	fi
}

detach_bpf() {
	if ./klp-bpf detach "/sys/fs/bpf/klp-repro-$1" 2>/dev/null; then
		result=ok
	else
		result=fails
	fi
}

livepatches() {
	for d in /sys/kernel/livepatch/*; do
		[ -d "$d" ] && printf ' %s:%s' "${d##*/}" "$(cat "$d/transition")"
	done
}

# begin(step, text): remember where the kernel log is
begin() {
	STEP=$1
	echo "== step $1: $2"
	expected "$1" > "$TMP/expected"
	LOGSTART=$(dmesg | wc -l)
}

# finish(step): wait for the livepatches expected, observe, compare; 1 on a difference
finish() {
	if ! grep -q '^report: ' "$TMP/expected"; then
		want=$(sed -n 's/^livepatches://p' "$TMP/expected")
		n=0
		while [ "$(livepatches)" != "$want" ] && [ $n -lt 600 ]; do nap; n=$((n + 1)); done
		# the functions it reads; after a kernel report, those of the step before
		sed -n 's/^runs: \([^ ]*\) .*/\1/p' "$TMP/expected" > "$TMP/files"
	fi
	now=$(livepatches)
	: > "$TMP/runs"
	while read -r f; do   # a read is a call: it may be what makes the kernel warn
		line=$(head -n 1 "$f" 2>/dev/null)
		case "$f:$line" in
		*": this has been live patched") ;;
		/proc/cmdline:* | /proc/meminfo:*) line="(original)" ;;
		esac
		echo "runs: $f $line" >> "$TMP/runs"
	done < "$TMP/files"
	dmesg | tail -n +$((LOGSTART + 1)) | sed -e "$STAMP" -e "$CALLER" > "$TMP/new"
	{
		echo "@@ step $1: ${2}"
		if ! grep -q '^report: ' "$TMP/expected"; then
			echo "result: $result"
			echo "livepatches:$now"
			cat "$TMP/runs"
			awk "$REPORTS" "$TMP/new" | grep -v -e 'tainting kernel' -e 'taints kernel' |
				grep -E -e 'livepatch:' -e '(^|[^A-Za-z0-9_])klp_fc_target([^A-Za-z0-9_]|$)' -e '(^|[^A-Za-z0-9_])klp_fc_patch([^A-Za-z0-9_]|$)' | sed 's/^/log: /'
		fi
		sed -n -e "$WARNING" -e "$WARNING2" "$TMP/new" | head -n 1
	} > "$TMP/observed"
	grep -q '^report: ' "$TMP/observed" && HURT=1
	echo "  expected:"; sed -e 1d -e 's/^/    /' "$TMP/expected"
	echo "  observed:"; sed -e 1d -e 's/^/    /' "$TMP/observed"
	if diff "$TMP/expected" "$TMP/observed" > /dev/null; then
		echo "  -> as expected"
		[ -z "$HURT" ] || finished   # a predicted kernel report: the kernel is hurt
		return 0
	fi
	echo "  -> DIFFERENT"
	DIFFERENT="$DIFFERENT $1"
	[ $KEEP_GOING = 1 ] && [ -z "$HURT" ] || finished
	return 0
}

finished() {
	if [ -n "$DIFFERENT" ]; then
		echo "differences at step(s)$DIFFERENT: this kernel does not behave as expected"
		exit 1
	fi
	echo "every step as expected"
	exit 0
}

# last(step): the last step the expectation has (a kernel report ends it)
last() {
	grep -q "^@@ step $1:" "$EXPECTED" && ! grep -q "^@@ step $(($1 + 1)):" "$EXPECTED"
}

DIFFERENT= HURT=
begin 1 'load klp_fc_patch'
load_module klp_fc_patch
finish 1 'load klp_fc_patch'
last 1 && finished
begin 2 'set klp_fc_patch pre_patch_ret -19'
write_file -19 /sys/module/klp_fc_patch/parameters/pre_patch_ret
finish 2 'set klp_fc_patch pre_patch_ret -19'
last 2 && finished
begin 3 'load klp_fc_target'
load_module klp_fc_target
finish 3 'load klp_fc_target'
last 3 && finished
begin 4 'set klp_fc_patch pre_patch_ret 0'
write_file 0 /sys/module/klp_fc_patch/parameters/pre_patch_ret
finish 4 'set klp_fc_patch pre_patch_ret 0'
last 4 && finished
begin 5 'load klp_fc_target'
load_module klp_fc_target
finish 5 'load klp_fc_target'
last 5 && finished
begin 6 'disable klp_fc_patch'
write_file 0 /sys/kernel/livepatch/klp_fc_patch/enabled
finish 6 'disable klp_fc_patch'
last 6 && finished
begin 7 'unload klp_fc_patch'
unload_module klp_fc_patch
finish 7 'unload klp_fc_patch'
last 7 && finished
begin 8 'load klp_fc_target'
load_module klp_fc_target
finish 8 'load klp_fc_target'
last 8 && finished
begin 9 'unload klp_fc_target'
unload_module klp_fc_target
finish 9 'unload klp_fc_target'
last 9 && finished
finished
