// The first steps of the exec face (argv[1] == AK_EXEC_ARG), before the Go
// runtime starts. Joining a mount or a user namespace needs a
// single-threaded caller, and a Go program has threads before main; joining
// the mount namespace in the clone3 child instead would make the kernel
// look up this binary's ELF interpreter in the container's root.
//
// On entry (pkg/process: spawnExec): fd 3 is the initsync socket, fd 4 a
// pidfd of the container's init (a plain one, never the autokill pidfd),
// fd 5 the sealed plan; argv[2] is the CLONE_NEW* set to join, in hex;
// argv[3] is "1" in fallback mode. On return fd 4 is a private procfs of
// the container's pid namespace, made while we still were in the host's
// user and mount namespaces (inside, mount_too_revealing may refuse one).
// Any failure is reported on fd 3 in initsync's format, and we exit.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AK_EXEC_ARG "__autokill_exec"
#define AK_SYNC_FD 3
#define AK_PIDFD 4

static void exec_fail(const char *what, int err) {
	char buf[512];
	size_t n = 0;
	const char *pre = "{\"kind\":\"fail\",\"error\":\"exec face: ";
	for (const char *p = pre; *p; p++) buf[n++] = *p;
	for (const char *p = what; *p && n < 400; p++) buf[n++] = (*p == '"' || *p == '\\') ? '\'' : *p;
	const char *mid = ": ";
	for (const char *p = mid; *p; p++) buf[n++] = *p;
	const char *es = strerror(err);
	for (const char *p = es; *p && n < 500; p++) buf[n++] = (*p == '"' || *p == '\\') ? '\'' : *p;
	buf[n++] = '"';
	buf[n++] = '}';
	(void)!write(AK_SYNC_FD, buf, n);
	_exit(127);
}

__attribute__((constructor)) static void ak_exec_ctor(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 4 || argv == NULL || argv[1] == NULL || strcmp(argv[1], AK_EXEC_ARG) != 0) return;
	// Before anything else: we are still the host's root in the host's
	// mount namespace, and the container's processes may soon see us.
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) exec_fail("prctl(PR_SET_DUMPABLE)", errno);
	char *end = NULL;
	errno = 0;
	unsigned long long flags = strtoull(argv[2], &end, 16);
	if (errno != 0 || end == argv[2] || *end != '\0') exec_fail("bad namespace flags", EINVAL);
	int fallback = strcmp(argv[3], "1") == 0;

	int fsfd = syscall(SYS_fsopen, "proc", FSOPEN_CLOEXEC);
	if (fsfd < 0) exec_fail("fsopen(proc)", errno);
	if (syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) exec_fail("fsconfig(proc)", errno);
	int proc = syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
	if (proc < 0) exec_fail("fsmount(proc)", errno);
	close(fsfd);

	// One call for all of them: the kernel joins the user namespace
	// first, and fails as a whole (ESRCH once the init is gone).
	if (setns(AK_PIDFD, (int)flags) < 0) exec_fail("setns to the container's namespaces", errno);
	if (flags & CLONE_NEWUSER) {
		// Root of the namespace, so that the Go part keeps its full
		// capability set there; groups first, while CAP_SETGID is ours.
		if (setresgid(0, 0, 0) < 0) exec_fail("setresgid(0) in the user namespace", errno);
		// "deny" in /proc/PID/setgroups: the user's groups are set later
		// or refused there with a clear error.
		if (setgroups(0, NULL) < 0 && errno != EPERM) exec_fail("setgroups in the user namespace", errno);
		if (setresuid(0, 0, 0) < 0) exec_fail("setresuid(0) in the user namespace", errno);
		// A credential change cleared PDEATHSIG.
		if (fallback && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) exec_fail("prctl(PR_SET_PDEATHSIG)", errno);
	}
	if (dup3(proc, AK_PIDFD, O_CLOEXEC) < 0) exec_fail("dup3 of the procfs", errno);
	close(proc);
}
