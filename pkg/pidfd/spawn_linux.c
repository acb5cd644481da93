// The clone3 trampoline. Go's fork path always sets exit_signal = SIGCHLD and
// cannot pass CLONE_PIDFD_AUTOKILL, so the container's init is created here.
// The child of a multithreaded process may only make async-signal-safe calls:
// everything between clone3 and execveat is a raw system call.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/sched.h>
#include "spawn_linux.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct ak_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
	    set_tid_size, cgroup;
};

// The kernel's sigaction and signal set, as rt_sigaction(2) and
// rt_sigprocmask(2) take them (arch/x86/include/uapi/asm/signal.h for
// x86-64, the asm-generic order elsewhere): glibc's struct sigaction has
// another layout and a 1024-bit mask, and its <signal.h> cannot be mixed
// with the kernel's header. AK_KERNEL_NSIG is the kernel's _NSIG: signals
// are 1.._NSIG, and the set is _NSIG bits.
#define AK_KERNEL_NSIG 64
typedef uint64_t ak_ksigset_t;
struct ak_ksigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	ak_ksigset_t mask;
};

// High enough to be above every fd the child must place at 0..3.
#define AK_SCRATCH_FD 64
// stdio, the sync socket and at most four more.
#define AK_MAX_FDS 8

static void child_fail(int sync_fd, const char *what, int err) {
	// The daemon reads initsync messages on sync_fd: report in that format
	// so a failure here reads like any other setup failure.
	char buf[256];
	size_t n = 0;
	const char *pre = "{\"kind\":\"fail\",\"error\":\"clone3 child: ";
	for (const char *p = pre; *p && n < 200; p++) buf[n++] = *p;
	for (const char *p = what; *p && n < 230; p++) buf[n++] = *p;
	const char *mid = ": errno ";
	for (const char *p = mid; *p && n < 240; p++) buf[n++] = *p;
	char digits[12];
	int d = 0;
	unsigned v = (unsigned)err;
	do { digits[d++] = '0' + v % 10; v /= 10; } while (v && d < 11);
	while (d > 0 && n < 252) buf[n++] = digits[--d];
	buf[n++] = '"';
	buf[n++] = '}';
	if (sync_fd >= 0) syscall(SYS_write, sync_fd, buf, n);
	syscall(SYS_exit_group, 127);
}

// launch runs in a child that joined a user namespace by path and unshared
// a pid namespace there (a pid namespace owned by that user namespace can
// only be made from inside it, and the daemon, multithreaded, cannot setns
// into a user namespace). It clones the container's init, pid 1 of that pid
// namespace, hands the init's pidfd to the daemon and exits; it returns only
// in the init, which goes on as any trampoline child.
//
// Native mode: the init is AUTOREAP|AUTOKILL, and its autokill pidfd is the
// struct file this clone3 made: passed over the socket it is the same file,
// so once the launcher exits the daemon's copy is the last one (an in-flight
// copy dies with the daemon's socket). Fallback: CLONE_PARENT makes the init
// a child of the daemon's spawner thread, so that waitid works and
// PDEATHSIG follows that thread, as for every other init.
static void launch(const struct ak_spawn *s) {
	// Nothing in the joined user namespace may ptrace us while we hold the
	// daemon's fds.
	if (syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) child_fail(s->launch_fd, "prctl(PR_SET_DUMPABLE)", errno);
	struct ak_clone_args args;
	memset(&args, 0, sizeof(args));
	int pidfd = -1;
	args.flags = s->launch_flags;
	args.pidfd = (uint64_t)(uintptr_t)&pidfd;
	args.exit_signal = 0;
	args.cgroup = (uint64_t)(s->launch_cgroup_fd >= 0 ? s->launch_cgroup_fd : 0);
	long pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0) {
		// PDEATHSIG is not inherited: arm it before anything else.
		if (s->pdeathsig && syscall(SYS_prctl, PR_SET_PDEATHSIG, s->pdeathsig, 0, 0, 0) < 0)
			child_fail(s->sync_fd, "prctl(PR_SET_PDEATHSIG)", errno);
		return;
	}
	if (pid < 0) child_fail(s->launch_fd, "clone3 of the init in the joined user namespace", errno);
	char b = 'p';
	struct iovec iov = {.iov_base = &b, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &pidfd, sizeof(int));
	long n;
	do n = syscall(SYS_sendmsg, s->launch_fd, &msg, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
	// Unsent (the daemon is gone), the init dies with our copy in native
	// mode and with the daemon's thread in fallback mode.
	syscall(SYS_exit_group, n == 1 ? 0 : 127);
}

static void child(const struct ak_spawn *s) {
	int i;
	// Go's handlers are meaningless here and must not run; the container
	// starts with every disposition at its default (SIGPIPE included).
	struct ak_ksigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.handler = SIG_DFL;
	for (i = 1; i <= AK_KERNEL_NSIG; i++) {
		if (i == SIGKILL || i == SIGSTOP) continue;
		syscall(SYS_rt_sigaction, i, &dfl, NULL, sizeof(ak_ksigset_t));
	}
	if (s->probe) syscall(SYS_exit_group, 0);

	// A launcher reports on its own socket: the daemon reads it before it
	// knows of any init.
	int fail_fd = s->launch ? s->launch_fd : s->sync_fd;
	if (s->pdeathsig) {
		// Fallback containment: the daemon's spawner thread never exits,
		// so this fires only when the daemon dies.
		if (syscall(SYS_prctl, PR_SET_PDEATHSIG, s->pdeathsig, 0, 0, 0) < 0)
			child_fail(fail_fd, "prctl(PR_SET_PDEATHSIG)", errno);
	}
	if (s->userns_wait) {
		// Until the daemon has written uid_map and gid_map we are nobody
		// in our user namespace, and execve would drop every capability.
		char b[16];
		long n;
		do n = syscall(SYS_read, s->sync_fd, b, sizeof(b)); while (n < 0 && errno == EINTR);
		if (n <= 0) syscall(SYS_exit_group, 127); // the daemon gave up on us
	}
	for (i = 0; i < s->n_ns; i++) {
		// Never nstype 0: with it the kernel joins whatever namespace the fd
		// names, so a "network" path to a mount namespace would move the
		// container into that mount namespace (EINVAL on a mismatch instead).
		if (syscall(SYS_setns, s->ns_fds[i], s->ns_types[i]) < 0) child_fail(fail_fd, "setns", errno);
	}
	if (s->unshare && syscall(SYS_unshare, s->unshare) < 0) child_fail(fail_fd, "unshare", errno);
	if (s->launch) launch(s);
	if (s->holder) {
		// Only its namespaces matter (the daemon reads the maps of the
		// user namespace it joined), then the daemon hangs up.
		char b = 'h';
		long n;
		// It outlives this call by a moment: no copy of the daemon's fds
		// (autokill pidfds of other containers) may stay with it.
		if (s->sync_fd > 0) syscall(SYS_close_range, 0, s->sync_fd - 1, 0);
		syscall(SYS_close_range, s->sync_fd + 1, ~0U, 0);
		if (syscall(SYS_write, s->sync_fd, &b, 1) != 1) syscall(SYS_exit_group, 127);
		do n = syscall(SYS_read, s->sync_fd, &b, 1); while (n < 0 && errno == EINTR);
		syscall(SYS_exit_group, 0);
	}
	if (s->become_root) {
		// Root of the user namespace, so that execve of the setup face
		// keeps the namespace's full capability set. Groups first, while
		// CAP_SETGID is ours; a credential change clears PDEATHSIG.
		if (syscall(SYS_setresgid, 0, 0, 0) < 0) child_fail(s->sync_fd, "setresgid(0) in the user namespace", errno);
		if (syscall(SYS_setgroups, 0, NULL) < 0) child_fail(s->sync_fd, "setgroups in the user namespace", errno);
		if (syscall(SYS_setresuid, 0, 0, 0) < 0) child_fail(s->sync_fd, "setresuid(0) in the user namespace", errno);
		if (s->pdeathsig && syscall(SYS_prctl, PR_SET_PDEATHSIG, s->pdeathsig, 0, 0, 0) < 0)
			child_fail(s->sync_fd, "prctl(PR_SET_PDEATHSIG)", errno);
	}
	// Move every fd we still need out of the 0..3+n_extra range first, so
	// that a source, or the binary to exec, that already sits on a target
	// number is not clobbered by the dup3s.
	int n_fds = 4 + s->n_extra;
	if (s->n_extra < 0 || n_fds > AK_MAX_FDS) child_fail(s->sync_fd, "too many fds for the child", EINVAL);
	int src[AK_MAX_FDS];
	int tmp[AK_MAX_FDS];
	src[0] = s->stdio[0];
	src[1] = s->stdio[1];
	src[2] = s->stdio[2];
	src[3] = s->sync_fd;
	for (i = 0; i < s->n_extra; i++) src[4 + i] = s->extra_fds[i];
	for (i = 0; i < n_fds; i++) {
		tmp[i] = syscall(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, AK_SCRATCH_FD);
		if (tmp[i] < 0) child_fail(s->sync_fd, "fcntl(F_DUPFD_CLOEXEC)", errno);
	}
	int exe_fd = syscall(SYS_fcntl, s->exe_fd, F_DUPFD_CLOEXEC, AK_SCRATCH_FD);
	if (exe_fd < 0) child_fail(s->sync_fd, "fcntl(F_DUPFD_CLOEXEC) of the binary", errno);
	for (i = 0; i < n_fds; i++) {
		if (syscall(SYS_dup3, tmp[i], i, 0) < 0) child_fail(s->sync_fd, "dup3", errno);
	}
	// Nothing else may cross execve, whatever a library opened without
	// O_CLOEXEC: above all not a copy of an autokill pidfd.
	if (syscall(SYS_close_range, n_fds, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		child_fail(3, "close_range", errno);
	ak_ksigset_t none = 0;
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(none));
	syscall(SYS_execveat, exe_fd, "", s->argv, s->envp, AT_EMPTY_PATH);
	child_fail(3, "execveat", errno);
}

int ak_spawn(const struct ak_spawn *s, int *pidfd, int *err) {
	struct ak_clone_args args;
	memset(&args, 0, sizeof(args));
	*pidfd = -1;
	args.flags = s->flags;
	args.pidfd = (uint64_t)(uintptr_t)pidfd;
	args.exit_signal = 0;
	args.cgroup = (uint64_t)(s->cgroup_fd >= 0 ? s->cgroup_fd : 0);

	// Block signals so no Go handler runs in the child before it resets them.
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	long pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0) child(s);
	int saved = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	*err = pid < 0 ? saved : 0;
	return (int)pid;
}
