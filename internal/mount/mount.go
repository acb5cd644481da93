// Package mount mounts the rootfs that containerd describes in a Create
// request (overlay, bind, ...) and unmounts it again.
package mount

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/mountopt"
)

// All mounts ms on target in order. On failure what was mounted is undone.
func All(ms []*types.Mount, target string) (err error) {
	mounted := 0
	defer func() {
		if err != nil {
			for ; mounted > 0; mounted-- {
				_ = unmount(target)
			}
		}
	}()
	for i, m := range ms {
		if err := one(m, target); err != nil {
			return fmt.Errorf("rootfs mount %d (%s on %s): %w", i, m.Type, target, err)
		}
		mounted++
	}
	return nil
}

func one(m *types.Mount, target string) error {
	opts, uids, gids, err := idmapOptions(m.Options)
	if err != nil {
		return err
	}
	if uids != nil {
		flags, data := mountopt.ParseOptions(opts)
		var rest []string
		if data != "" {
			rest = strings.Split(data, ",")
		}
		return oneIDMapped(mountSpec{typ: m.Type, source: m.Source, flags: flags, options: rest}, uids, gids, target)
	}
	flags, data := mountopt.ParseOptions(m.Options)
	// The kernel takes at most a page of mount data; containerd's own
	// workaround (chdir + relative lowerdirs) is not needed for images with
	// a sane number of layers.
	if len(data) >= os.Getpagesize() {
		return fmt.Errorf("mount options of %d bytes exceed a page: %w", len(data), errdefs.ErrNotImplemented)
	}
	typ := m.Type
	if typ == "bind" || typ == "rbind" {
		typ = ""
		flags |= unix.MS_BIND
	}
	// Propagation and read-only bind flags need a second call.
	if err := unix.Mount(m.Source, target, typ, flags&^(unix.MS_REMOUNT), data); err != nil {
		return &os.PathError{Op: "mount", Path: target, Err: err}
	}
	if flags&unix.MS_BIND != 0 {
		return remountBindFlags(target, flags)
	}
	return nil
}

// remountBindFlags applies what a bind mount(2) ignores: read-only, nosuid,
// nodev, noexec need a remount.
func remountBindFlags(target string, flags uintptr) error {
	const second = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if flags&second == 0 {
		return nil
	}
	if err := unix.Mount("", target, "", flags&second|unix.MS_BIND|unix.MS_REMOUNT, ""); err != nil {
		_ = unmount(target)
		return &os.PathError{Op: "remount", Path: target, Err: err}
	}
	return nil
}

// UnmountAll unmounts every mount stacked on target. A target that is not a
// mount point is fine: there is nothing to do.
func UnmountAll(target string) error {
	for i := 0; i < 64; i++ {
		err := unmount(target)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 64 unmounts", target)
}

func unmount(target string) error {
	for i := 0; ; i++ {
		err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
		if err == unix.EBUSY && i < 50 {
			// Processes that still use the rootfs are being killed.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err == unix.EBUSY {
			err = unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
		if err != nil {
			return &os.PathError{Op: "umount", Path: target, Err: err}
		}
		return nil
	}
}
