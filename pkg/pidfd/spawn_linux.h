#include <stdint.h>

struct ak_spawn {
	uint64_t flags;      // clone3 flags, CLONE_PIDFD included
	int cgroup_fd;       // for CLONE_INTO_CGROUP, else -1
	int exe_fd;          // what the child execveat()s
	char *const *argv;
	char *const *envp;
	const int *ns_fds;   // namespaces to setns() into
	const int *ns_types; // their CLONE_NEW* types: setns refuses a mismatch
	int n_ns;
	int stdio[3];        // become 0, 1, 2
	int sync_fd;         // becomes 3
	const int *extra_fds; // become 4, 5, ... (inherited across exec)
	int n_extra;
	int pdeathsig;       // 0 or the signal for PR_SET_PDEATHSIG
	int probe;           // child exits at once: feature probe
	int userns_wait;     // new user ns: read one packet on sync_fd (maps written) first
	int become_root;     // setresgid/setresuid(0) in the (new or joined) user ns
	uint64_t unshare;    // CLONE_NEW* to unshare after the setns (owned by a joined user ns)
	int holder;          // after setns/unshare: say so on sync_fd, wait for its EOF, exit (no exec)
	int launch;          // after setns/unshare the child is only a launcher: it clones
	                     // the real child with launch_flags (into launch_cgroup_fd), sends that
	                     // child's pidfd over launch_fd (SCM_RIGHTS) and exits; its own
	                     // failures are reported on launch_fd
	int launch_fd;
	uint64_t launch_flags;
	int launch_cgroup_fd; // for the launched child's CLONE_INTO_CGROUP, else -1
};

int ak_spawn(const struct ak_spawn *s, int *pidfd, int *err);
