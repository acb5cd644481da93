package pidfd

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// siginfo layout for SIGCHLD on 64-bit Linux: si_code at 8, si_status at 24.
const (
	cldExited = 1 // CLD_EXITED; the other CLD_* codes mean a signal
)

func siginfoStatus(info *unix.Siginfo) unix.WaitStatus {
	b := (*[128]byte)(unsafe.Pointer(info))
	code := *(*int32)(unsafe.Pointer(&b[8]))
	status := *(*int32)(unsafe.Pointer(&b[24]))
	if code == cldExited {
		return unix.WaitStatus(uint32(status&0xff) << 8)
	}
	ws := unix.WaitStatus(uint32(status) & 0x7f)
	if code == 3 { // CLD_DUMPED
		ws |= 0x80
	}
	return ws
}
