package setup

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// giveStdio makes the process's user the owner of its stdio, as runc's init
// does before it changes user (libcontainer fixStdioPermissions): a process
// that is not root can then reopen its own stdio (/dev/stdout,
// /proc/self/fd/1), which the kernel checks against the inode, not the fd.
// Only the uid changes.
//
// What runc's init holds are containerd's shim's pipes; here they are
// containerd's fifos (in its 0700 directory), a binary:// logger's pipes or
// the container's own pty. Those are what is given: /dev/null, a regular
// file (file://: the user's log file, which runc never sees) and anything
// else keep their owner. Inside a user namespace the chown fails with EPERM
// when the inode's owner is not mapped (containerd's fifos are host root's):
// the runtime options IoUid/IoGid, applied by the daemon, exist to make it
// mapped. EPERM and EROFS leave the fd as it is, as with runc.
func giveStdio(uid uint32) error {
	for fd := 0; fd <= 2; fd++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return os.NewSyscallError(fmt.Sprintf("fstat stdio %d", fd), err)
		}
		if st.Uid == uid || !givenStdio(&st) {
			continue
		}
		if err := unix.Fchown(fd, int(uid), -1); err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS) {
				continue
			}
			return os.NewSyscallError(fmt.Sprintf("fchown stdio %d to uid %d", fd, uid), err)
		}
	}
	return nil
}

// givenStdio: a fifo or pipe, or a pty slave (Unix98 majors 136-143).
func givenStdio(st *unix.Stat_t) bool {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return true
	case unix.S_IFCHR:
		m := unix.Major(uint64(st.Rdev))
		return m >= 136 && m <= 143
	}
	return false
}
