package process

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// setupExe is the shim binary as the setup face runs it: a detached,
// read-only bind mount of /proc/self/exe made with open_tree. The setup face
// runs inside the container, and its /proc/<pid>/exe then resolves to a
// read-only mount, so no process of the container can open the shim binary
// for writing (the CVE-2019-5736 class). One per daemon, no copy per
// container (runc's sealed memfd costs the binary's size each time).
var setupExe = sync.OnceValues(func() (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, "/proc/self/exe", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open_tree(/proc/self/exe): %w", err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mount_setattr(read-only) on the shim binary: %w", err)
	}
	return os.NewFile(uintptr(fd), "shim-exe-ro"), nil
})

// Prepare does once per daemon what every Create needs, so that the first
// Create does not pay for it.
func Prepare() error {
	_, err := setupExe()
	return err
}
