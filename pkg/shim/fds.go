package shim

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// cloexecFrom marks every descriptor from first on close-on-exec. start and
// the daemon inherit whatever their parent left open without CLOEXEC; none of
// it may reach the daemon or a container. Only ExtraFiles, dup2'd by os/exec
// after this, are inherited. Linux 5.11 has close_range(CLOSE_RANGE_CLOEXEC);
// older kernels get fcntl on each fd of /proc/self/fd.
func cloexecFrom(first int) {
	if unix.CloseRange(uint(first), ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd < first || fd == int(d.Fd()) {
			continue
		}
		unix.CloseOnExec(fd)
	}
}
