/*
 * klp-getpid: call getpid(2) in a loop until killed, as upstream's
 * test_klp-call_getpid does (tools/testing/selftests/livepatch/test_programs):
 * a user task that is in the kernel at every moment it can be, and switches to a
 * transition's target state on each return to user space.
 *
 * Why a program and a PAUSE after each call: a guest of two CPUs runs both on one
 * TCG thread (harness/guest/qemu.py, accel_args), which passes from one vCPU to the
 * other when the running one executes PAUSE or HLT, or at QEMU's round-robin kick,
 * every 100 ms.  A busy loop without PAUSE keeps the thread for those 100 ms, and
 * every IPI the other CPU waits for (text_poke_bp's sync_core after each call-site
 * rewrite: 6.12 rewrites every cond_resched() call site at each transition) waits
 * that long: minutes per transition.  PAUSE is what cpu_relax() is; it changes
 * nothing the kernel sees (the task still only calls getpid).
 */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	for (;;) {
		syscall(SYS_getpid);
		__builtin_ia32_pause();
	}
}
