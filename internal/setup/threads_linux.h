#include <stdint.h>

#define AK_BC_MAX_OPS 72

// One system call of a broadcast program.
struct ak_bc_op {
	long nr;
	long args[6];
};

// Runs ops, in order, on every thread of the process (the caller's
// included), listing threads from task_dir_fd (a directory fd of
// <procfs>/self/task of a procfs the container cannot have touched).
// Returns 0, or -1 with *failed_op and *err set: the index of the first op
// that failed and its errno (on any thread), or failed_op == -1 when a
// thread could not be reached.
int ak_broadcast(int task_dir_fd, const struct ak_bc_op *ops, int n_ops, int *failed_op, int *err);
