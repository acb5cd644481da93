package pidfd

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

var probeOnce = sync.OnceValue(probe)

const nativeFlags = unix.CLONE_PIDFD | unix.CLONE_AUTOREAP | unix.CLONE_PIDFD_AUTOKILL

func probe() Mode {
	kernel := "unknown"
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	err := probeFlags(nativeFlags)
	if err == nil {
		return Mode{Native: true, Reason: fmt.Sprintf(
			"kernel %s: clone3 takes CLONE_PIDFD|CLONE_AUTOREAP|CLONE_PIDFD_AUTOKILL: containers die when the shim's pidfd closes and never become zombies", kernel)}
	}
	why := err.Error()
	if errors.Is(err, unix.EINVAL) {
		why = "clone3 rejects CLONE_AUTOREAP|CLONE_PIDFD_AUTOKILL (EINVAL; needs Linux 7.1+)"
	}
	return Mode{Native: false, Reason: fmt.Sprintf(
		"kernel %s: %s; fallback: exit_signal 0 + waitid(P_PIDFD) + PR_SET_PDEATHSIG(SIGKILL), which a crash of the shim still triggers but setuid binaries in the container can clear", kernel, why)}
}

func probeFlags(flags uint64) error {
	startSpawn()
	reply := make(chan spawnResult, 1)
	spawnCh <- spawnReq{probe: flags, reply: reply}
	return (<-reply).err
}
