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
)

// Flag is the effect of one mount option: set or clear an MS_* flag.
type Flag struct {
	Clear bool
	Flag  uint64
}

// Flags is the usual mount(8) option table, shared by the rootfs mounts of
// a Create request and the spec mounts.
var Flags = map[string]Flag{
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"iversion":      {false, unix.MS_I_VERSION},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"loud":          {true, unix.MS_SILENT},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"noiversion":    {true, unix.MS_I_VERSION},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"nosymfollow":   {false, unix.MS_NOSYMFOLLOW},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"silent":        {false, unix.MS_SILENT},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"symfollow":     {true, unix.MS_NOSYMFOLLOW},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

// ParseOptions splits mount options into flags and the data string.
func ParseOptions(options []string) (flags uintptr, data string) {
	var rest []string
	for _, o := range options {
		if f, ok := Flags[o]; ok {
			if f.Clear {
				flags &^= uintptr(f.Flag)
			} else {
				flags |= uintptr(f.Flag)
			}
			continue
		}
		rest = append(rest, o)
	}
	return flags, strings.Join(rest, ",")
}

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
		flags, _ := ParseOptions(opts)
		var rest []string
		for _, o := range opts {
			if _, ok := Flags[o]; !ok {
				rest = append(rest, o)
			}
		}
		return oneIDMapped(mountSpec{typ: m.Type, source: m.Source, flags: flags, options: rest}, uids, gids, target)
	}
	flags, data := ParseOptions(m.Options)
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
