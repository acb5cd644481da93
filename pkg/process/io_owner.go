package process

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// The runtime options IoUid/IoGid (runc's Options, or this runtime's options
// document) name the owner of a container's stdio. containerd's runc shim
// puts pipes between containerd's fifos and runc and fchowns them to it
// (go-runc NewPipeIO); runc's init then gives its stdio to the process's
// user (fixStdioPermissions; here internal/setup giveStdio), which inside a
// user namespace works only if the current owner is mapped there: IoUid and
// IoGid are how the host's root owner is replaced by the namespace's root,
// so that a process that is not root can reopen its stdio (/dev/stdout,
// /proc/self/fd/1: the kernel checks the inode, not the fd). Here the
// process holds containerd's fifos themselves, so the fifos are what is
// chowned, to the same effect. They stay in containerd's 0700 fifo
// directory: the new owner reaches them only through the fds the container
// already holds.
//
// Only fifos change owner, as only pipes do with runc: /dev/null (no stream)
// is left alone; a regular file (file://, or a plain file path) is the
// user's and keeps its owner, and binary:// logger pipes are not chowned by
// runc's shim either. Those last two are logged once.

// ioOwner is a container's IoUid/IoGid.
type ioOwner struct{ uid, gid uint32 }

// ioOwners maps a container id to its ioOwner, from Create to Delete: the
// init's and every exec's openStdio find it by the id they open IO for
// ("<container>" or "<container>/<exec>"; containerd ids have no '/').
var ioOwners sync.Map

// setIOOwner records the owner of container id's stdio; 0:0 (containerd
// made the fifos as root) records nothing.
func setIOOwner(id string, uid, gid uint32) {
	if uid != 0 || gid != 0 {
		ioOwners.Store(id, ioOwner{uid, gid})
	}
}

func forgetIOOwner(id string) { ioOwners.Delete(id) }

// ioOwnerWarned keeps the "cannot apply" warnings to one per daemon each.
var ioOwnerWarned sync.Map

// applyIOOwner gives the process's stdio fifos to the container's IoUid and
// IoGid, if it has any. Called by openStdio once the three fds are open.
func (s *stdio) applyIOOwner(ctx context.Context, id string) error {
	cid, _, _ := strings.Cut(id, "/")
	v, ok := ioOwners.Load(cid)
	if !ok {
		return nil
	}
	o := v.(ioOwner)
	for i, f := range s.child {
		if f == nil {
			continue
		}
		name := [3]string{"stdin", "stdout", "stderr"}[i]
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return fmt.Errorf("%s: fstat: %w", name, err)
		}
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFIFO && s.logger != nil && i > 0:
			warnIOOwnerOnce(ctx, "binary", "IoUid/IoGid: the pipes to a binary:// logger keep the shim's owner, as with containerd's runc shim")
		case st.Mode&unix.S_IFMT == unix.S_IFIFO:
			if err := unix.Fchown(int(f.Fd()), int(o.uid), int(o.gid)); err != nil {
				return fmt.Errorf("%s: give the fifo to IoUid %d IoGid %d: %w", name, o.uid, o.gid, err)
			}
		case st.Mode&unix.S_IFMT == unix.S_IFREG:
			warnIOOwnerOnce(ctx, "file", "IoUid/IoGid: a file the process writes to directly (file://) keeps its owner; the process cannot reopen it unless that owner lets it")
		}
	}
	return nil
}

func warnIOOwnerOnce(ctx context.Context, key, msg string) {
	if _, seen := ioOwnerWarned.LoadOrStore(key, true); !seen {
		log.G(ctx).WithField("option", "IoUid/IoGid").Warn(msg)
	}
}
