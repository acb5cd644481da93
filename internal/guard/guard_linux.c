// The guard face of the shim binary, in C so that it never starts a Go
// runtime (a second runtime per daemon would cost several MiB; this costs
// the pages of libc it touches). The constructor runs before the Go runtime
// in every invocation of the binary and returns at once unless argv[1] is
// the guard's argument.
//
// Protocol on fd 3 (SOCK_SEQPACKET, one message per request, the daemon
// holds the only other end):
//   "A\0<id>\0<dir>\0<dir>\0..."  arm: kill every process of these cgroup
//                                 directories when the daemon dies
//   "D\0<id>\0"                   disarm
// Each request is answered with "k" or "e<reason>". EOF on fd 3, or the
// daemon's pidfd turning readable, means the daemon died: the guard kills
// what is armed and exits.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "guard_linux.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#define CONN_FD 3
#define MAX_MSG (64 * 1024)
// How long the guard keeps sweeping a cgroup v1 tree that does not empty
// (a process in uninterruptible sleep): then it gives up and exits.
#define SWEEP_TIMEOUT_NS (10LL * 1000 * 1000 * 1000)

struct armed {
	char *id;
	char *dirs; // NUL-separated, n_dirs of them
	size_t len;
	struct armed *next;
};

static struct armed *armed_list;

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(int ms) {
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

// glog goes to the daemon's stderr (the shim log containerd copies). It is
// only used after the kills: a log reader that stalls must not delay them.
static void glog(const char *level, const char *fmt, ...) {
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dprintf(2, "level=%s msg=\"guard: %s\" pid=%d\n", level, msg, (int)getpid());
}

static int write_file(const char *dir, const char *name, const char *val) {
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p)) return -ENAMETOOLONG;
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0) return -errno;
	ssize_t n = write(fd, val, strlen(val));
	int err = n < 0 ? -errno : 0;
	close(fd);
	return err;
}

static int exists(const char *dir, const char *name) {
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p)) return 0;
	return access(p, F_OK) == 0;
}

static void freezer_wait(const char *dir) {
	// The v1 freezer reports FREEZING until every task stopped; a task in
	// uninterruptible sleep can keep it there, so wait a little, not forever.
	char p[PATH_MAX], buf[32];
	snprintf(p, sizeof(p), "%s/freezer.state", dir);
	for (int i = 0; i < 50; i++) {
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0) return;
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0) return;
		buf[n] = 0;
		if (strncmp(buf, "FROZEN", 6) == 0) return;
		sleep_ms(1);
	}
}

// kill_procs SIGKILLs every pid in dir/cgroup.procs and in its
// subdirectories, through pidfds; it returns how many it found.
static int kill_procs(const char *dir, int depth) {
	char p[PATH_MAX];
	int found = 0;
	if (snprintf(p, sizeof(p), "%s/cgroup.procs", dir) >= (int)sizeof(p)) return 0;
	FILE *f = fopen(p, "re");
	if (f) {
		int pid;
		while (fscanf(f, "%d", &pid) == 1) {
			found++;
			int pfd = syscall(SYS_pidfd_open, pid, 0);
			if (pfd < 0) continue; // gone already
			syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
			close(pfd);
		}
		fclose(f);
	}
	if (depth >= 32) return found;
	DIR *d = opendir(dir);
	if (!d) return found;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
		if (snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) >= (int)sizeof(p)) continue;
		found += kill_procs(p, depth + 1);
	}
	closedir(d);
	return found;
}

// sweep kills every process of one armed container. cgroup v2 has an atomic
// cgroup.kill (5.14); on v1 the tree is frozen so that nothing forks or
// exits (no pid reuse) between listing a pid and pidfd_open, then thawed for
// the SIGKILLs to land, until it is empty.
static int sweep(const struct armed *a, int *left) {
	const char *freezer = NULL;
	int v1 = 0, killed = 0;
	const char *d;
	for (d = a->dirs; d < a->dirs + a->len; d += strlen(d) + 1) {
		if (exists(d, "cgroup.kill")) {
			if (write_file(d, "cgroup.kill", "1") == 0) continue;
		}
		v1 = 1;
		if (!freezer && exists(d, "freezer.state")) freezer = d;
	}
	*left = 0;
	if (!v1) return 0;
	long long deadline = now_ns() + SWEEP_TIMEOUT_NS;
	for (;;) {
		if (freezer && write_file(freezer, "freezer.state", "FROZEN") == 0) freezer_wait(freezer);
		int n = 0;
		for (d = a->dirs; d < a->dirs + a->len; d += strlen(d) + 1) n += kill_procs(d, 0);
		if (freezer) write_file(freezer, "freezer.state", "THAWED");
		if (n == 0) return killed;
		killed += n;
		if (now_ns() > deadline) {
			*left = n;
			return killed;
		}
		sleep_ms(2);
	}
}

static void kill_all(const char *why) {
	int containers = 0, procs = 0;
	struct armed *a;
	for (a = armed_list; a; a = a->next) {
		int left = 0;
		procs += sweep(a, &left);
		containers++;
		if (left) glog("error", "container %s: %d processes still there after %llds", a->id, left, SWEEP_TIMEOUT_NS / 1000000000LL);
	}
	if (containers)
		glog("warning", "%s: killed the processes of %d armed containers (%d SIGKILLs on cgroup v1)", why, containers, procs);
}

static void reply(const char *msg) {
	send(CONN_FD, msg, strlen(msg), MSG_NOSIGNAL);
}

static void drop(const char *id) {
	struct armed **pp = &armed_list;
	while (*pp) {
		if (strcmp((*pp)->id, id) == 0) {
			struct armed *a = *pp;
			*pp = a->next;
			free(a->id);
			free(a->dirs);
			free(a);
			return;
		}
		pp = &(*pp)->next;
	}
}

static void handle(char *buf, size_t n) {
	if (n < 3 || buf[n - 1] != 0 || buf[1] != 0) {
		reply("emalformed request");
		return;
	}
	const char *id = buf + 2;
	size_t idlen = strlen(id);
	const char *dirs = id + idlen + 1;
	size_t len = buf + n - dirs;
	switch (buf[0]) {
	case 'A': {
		if (idlen == 0 || len == 0) {
			reply("earm needs an id and at least one directory");
			return;
		}
		for (const char *d = dirs; d < dirs + len; d += strlen(d) + 1) {
			if (d[0] != '/') {
				reply("ecgroup directory is not absolute");
				return;
			}
		}
		struct armed *a = calloc(1, sizeof(*a));
		if (a) {
			a->id = strdup(id);
			a->dirs = malloc(len);
		}
		if (!a || !a->id || !a->dirs) {
			if (a) {
				free(a->id);
				free(a);
			}
			reply("eout of memory");
			return;
		}
		memcpy(a->dirs, dirs, len);
		a->len = len;
		drop(id);
		a->next = armed_list;
		armed_list = a;
		reply("k");
		return;
	}
	case 'D':
		drop(id);
		reply("k");
		return;
	}
	reply("eunknown request");
}

// drain takes every request the daemon queued before it died: a container
// armed a moment before the crash is still killed.
static void drain(char *buf) {
	for (;;) {
		ssize_t n = recv(CONN_FD, buf, MAX_MSG, MSG_DONTWAIT | MSG_TRUNC);
		if (n <= 0) return;
		if (n <= MAX_MSG) handle(buf, (size_t)n);
	}
}

static int guard_main(int argc, char **argv) {
	// Nobody may ptrace or read the memory of the process that decides
	// which cgroups to kill; it is also its own session, so a signal to
	// the daemon's process group or terminal does not reach it.
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
	setsid();
	signal(SIGPIPE, SIG_IGN);
	// Only 0-2 and the connection: never a container's fd or an autokill
	// pidfd, whatever the spawner let through.
	syscall(SYS_close_range, CONN_FD + 1, ~0U, 0);

	if (argc < 3) {
		glog("error", "usage: %s %s DAEMON-PID", argv[0], argv[1]);
		return 2;
	}
	pid_t daemon = (pid_t)atoi(argv[2]);
	char *buf = malloc(MAX_MSG);
	if (!buf || daemon <= 0) return 2;

	// The daemon's pid is checked after pidfd_open: if the daemon died
	// first and its pid was reused, we are no longer its child.
	int dfd = syscall(SYS_pidfd_open, daemon, 0);
	if (dfd < 0 || getppid() != daemon) {
		drain(buf);
		kill_all("daemon gone before the guard started");
		return 0;
	}
	struct pollfd fds[2] = {{.fd = CONN_FD, .events = POLLIN}, {.fd = dfd, .events = POLLIN}};
	for (;;) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR) continue;
			break;
		}
		if (fds[1].revents) break;
		if (fds[0].revents & POLLIN) {
			ssize_t n = recv(CONN_FD, buf, MAX_MSG, MSG_TRUNC);
			if (n == 0) break;
			if (n < 0) {
				if (errno == EINTR || errno == EAGAIN) continue;
				break;
			}
			if (n > MAX_MSG) {
				reply("erequest too large");
				continue;
			}
			handle(buf, (size_t)n);
			continue;
		}
		if (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) break;
	}
	drain(buf);
	kill_all("the daemon died");
	return 0;
}

__attribute__((constructor)) static void ak_guard_ctor(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 2 || argv == NULL || argv[1] == NULL || strcmp(argv[1], AK_GUARD_ARG) != 0) return;
	_exit(guard_main(argc, argv));
}
