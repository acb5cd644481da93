package setup

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// In a user namespace of its own the setup face is root of that namespace
// only (pkg/pidfd's trampoline made it so before execve): mknod is refused
// (createDevice binds the host's nodes instead), and a new sysfs needs a
// network namespace owned by the user namespace. Without one (host
// network, or a joined netns of the host), sysfs is refused with EPERM and
// the host's /sys is bound instead, recursively and with the spec's flags
// on every mount of the tree, as runc does.

// sysfsFallback binds the host's /sys on target when a new sysfs was
// refused for lack of privilege over the network namespace.
func sysfsFallback(m spec.Mount, target *os.File, mountErr error) error {
	if m.Type != "sysfs" || !errors.Is(mountErr, unix.EPERM) {
		return mountErr
	}
	tree, err := linux.OpenTree(unix.AT_FDCWD, "/sys", unix.OPEN_TREE_CLONE|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("mount sysfs on %s: %w; bind of the host's /sys instead: %w", m.Destination, mountErr, err)
	}
	defer tree.Close()
	st, err := linux.Fstatfs(tree)
	if err != nil {
		return err
	}
	if st.Type != unix.SYSFS_MAGIC {
		return fmt.Errorf("mount sysfs on %s: %w; the host's /sys is not sysfs (%#x)", m.Destination, mountErr, st.Type)
	}
	if a := mountAttrs(m.Flags); a.Attr_set != 0 || a.Attr_clr != 0 {
		if err := linux.MountSetattr(tree, unix.AT_RECURSIVE, a); err != nil {
			return fmt.Errorf("bind of the host's /sys on %s: %w", m.Destination, err)
		}
	}
	if err := linux.MoveMount(tree, target); err != nil {
		return fmt.Errorf("bind of the host's /sys on %s: %w", m.Destination, err)
	}
	return propagateFd(tree, m.Destination, m.Propagation)
}
