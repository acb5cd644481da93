package pidfd

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// sigchldInfo is the kernel's siginfo_t as waitid fills it for a child
// (include/uapi/asm-generic/siginfo.h, 64-bit: the union starts at 16; its
// _sigchld member is pid, uid, status). x/sys's Siginfo keeps the union
// opaque.
type sigchldInfo struct {
	Signo  int32
	Errno  int32
	Code   int32
	_      int32
	Pid    int32
	UID    uint32
	Status int32
	_      [128 - 28]byte
}

// The si_code values of SIGCHLD (include/uapi/asm-generic/siginfo.h), which
// x/sys does not define.
const (
	cldExited = 1 // Status is the exit code
	cldKilled = 2 // Status is the signal
	cldDumped = 3 // the signal, and a core was dumped
)

var _ [unsafe.Sizeof(unix.Siginfo{}) - unsafe.Sizeof(sigchldInfo{})]struct{} // same size
var _ [unsafe.Sizeof(sigchldInfo{}) - unsafe.Sizeof(unix.Siginfo{})]struct{}

// siginfoStatus turns waitid's answer into the wait status wait4 would give.
func siginfoStatus(info *unix.Siginfo) unix.WaitStatus {
	si := (*sigchldInfo)(unsafe.Pointer(info))
	switch si.Code {
	case cldExited:
		return unix.WaitStatus(uint32(si.Status&0xff) << 8)
	case cldDumped:
		return unix.WaitStatus(uint32(si.Status)&0x7f | 0x80)
	default: // cldKilled; waitid(WEXITED) reports no other code
		return unix.WaitStatus(uint32(si.Status) & 0x7f)
	}
}
