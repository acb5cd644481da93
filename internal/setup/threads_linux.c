// Runs a short list of system calls on every thread of the setup face.
// Capability sets, the bounding set and keepcaps are per thread, and the
// setup face is a Go program with several threads: a capability dropped by
// the main thread alone stays with the others, which share its address space.
// glibc does the same for set*id (SIGSETXID); libcap's psx does it for any
// call, but finds threads through /proc/<getpid()>/task by path, which after
// pivot_root is the container's procfs (overmountable) and before it the
// host's (another pid namespace). Here the thread list comes from a directory
// fd of a private procfs instance.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "threads_linux.h"

// A real-time signal neither glibc nor Go uses for itself.
#define AK_BC_SIG (SIGRTMAX - 1)
#define AK_BC_MAX_THREADS 256

struct ak_bc_slot {
	volatile int tid;
	volatile int state; // 0 signalled, 1 done
	volatile int failed_op;
	volatile int err;
};

static const struct ak_bc_op *bc_ops;
static int bc_n_ops;
static struct ak_bc_slot bc_slots[AK_BC_MAX_THREADS];
static volatile int bc_n_slots;

// run executes the program on the calling thread; async-signal-safe.
static void run(int *failed_op, int *err) {
	*failed_op = -1;
	*err = 0;
	for (int i = 0; i < bc_n_ops; i++) {
		const struct ak_bc_op *o = &bc_ops[i];
		long r;
		do {
			r = syscall(o->nr, o->args[0], o->args[1], o->args[2], o->args[3], o->args[4], o->args[5]);
		} while (r < 0 && errno == EINTR);
		if (r < 0) {
			*failed_op = i;
			*err = errno;
			return;
		}
	}
}

static void handler(int sig, siginfo_t *si, void *uc) {
	(void)sig;
	(void)si;
	(void)uc;
	int saved = errno;
	int tid = (int)syscall(SYS_gettid);
	for (int i = 0; i < bc_n_slots; i++) {
		struct ak_bc_slot *s = &bc_slots[i];
		if (s->tid != tid || s->state != 0) continue;
		int fop, e;
		run(&fop, &e);
		s->failed_op = fop;
		s->err = e;
		__atomic_store_n(&s->state, 1, __ATOMIC_SEQ_CST);
		break;
	}
	errno = saved;
}

static int known(int tid) {
	for (int i = 0; i < bc_n_slots; i++)
		if (bc_slots[i].tid == tid) return 1;
	return 0;
}

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

// scan signals every thread listed in task_dir_fd not yet in a slot.
// Returns how many it added, or -1 with errno.
static int scan(int task_dir_fd, int self) {
	char buf[4096];
	int added = 0;
	if (lseek(task_dir_fd, 0, SEEK_SET) < 0) return -1;
	for (;;) {
		long n = syscall(SYS_getdents64, task_dir_fd, buf, sizeof(buf));
		if (n < 0) return -1;
		if (n == 0) break;
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
			off += d->d_reclen;
			int tid = 0;
			const char *p = d->d_name;
			if (*p < '0' || *p > '9') continue;
			for (; *p >= '0' && *p <= '9'; p++) tid = tid * 10 + (*p - '0');
			if (tid == self || known(tid)) continue;
			if (bc_n_slots == AK_BC_MAX_THREADS) {
				errno = E2BIG;
				return -1;
			}
			struct ak_bc_slot *s = &bc_slots[bc_n_slots];
			s->tid = tid;
			s->state = 0;
			__atomic_store_n(&bc_n_slots, bc_n_slots + 1, __ATOMIC_SEQ_CST);
			added++;
			if (syscall(SYS_tgkill, getpid(), tid, AK_BC_SIG) < 0) {
				if (errno != ESRCH) return -1;
				s->state = 1; // gone: nothing to change
				s->failed_op = -1;
				s->err = 0;
			}
		}
	}
	return added;
}

int ak_broadcast(int task_dir_fd, const struct ak_bc_op *ops, int n_ops, int *failed_op, int *err) {
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = handler;
	// SA_ONSTACK: the signal may land on a thread running Go code on a
	// small goroutine stack; every Go thread has an alternate one.
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	bc_ops = ops;
	bc_n_ops = n_ops;
	bc_n_slots = 0;
	if (sigaction(AK_BC_SIG, &sa, &old) < 0) {
		*failed_op = -1;
		*err = errno;
		return -1;
	}
	int self = (int)syscall(SYS_gettid);
	int rc = 0;
	run(failed_op, err);
	if (*failed_op >= 0) {
		rc = -1;
		goto out;
	}
	// Until a scan finds no thread it has not seen: a thread created
	// meanwhile was cloned from one that may not have run the program yet.
	for (int round = 0;; round++) {
		int added = scan(task_dir_fd, self);
		if (added < 0) {
			*failed_op = -1;
			*err = errno;
			rc = -1;
			goto out;
		}
		// Wait for every signalled thread (bounded: about 2 s).
		for (int spins = 0;; spins++) {
			int pending = 0;
			for (int i = 0; i < bc_n_slots; i++) {
				struct ak_bc_slot *s = &bc_slots[i];
				if (__atomic_load_n(&s->state, __ATOMIC_SEQ_CST)) continue;
				// A thread that exited never runs the handler.
				if (syscall(SYS_tgkill, getpid(), s->tid, 0) < 0 && errno == ESRCH) {
					s->state = 1;
					s->failed_op = -1;
					s->err = 0;
					continue;
				}
				pending++;
			}
			if (!pending) break;
			if (spins > 20000) {
				*failed_op = -1;
				*err = ETIMEDOUT;
				rc = -1;
				goto out;
			}
			struct timespec ts = {0, 100000};
			nanosleep(&ts, NULL);
		}
		if (added == 0 && round > 0) break;
	}
	for (int i = 0; i < bc_n_slots; i++) {
		if (bc_slots[i].failed_op >= 0) {
			*failed_op = bc_slots[i].failed_op;
			*err = bc_slots[i].err;
			rc = -1;
			break;
		}
	}
out:
	sigaction(AK_BC_SIG, &old, NULL);
	return rc;
}
