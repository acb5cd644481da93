// Package pidfd is the only owner of pidfds in the shim: it creates processes
// with clone3, probes which clone3 flags the kernel has, watches pidfds for
// exits, reads exit status and delivers signals.
package pidfd

// Mode says how the shim contains its children.
type Mode struct {
	// Native is true when clone3 takes CLONE_AUTOREAP|CLONE_PIDFD_AUTOKILL.
	Native bool
	// Reason says why the mode was chosen, for logs and -info.
	Reason string
}

// Name is "native" or "fallback".
func (m Mode) Name() string {
	if m.Native {
		return "native"
	}
	return "fallback"
}

// Probe reports, once per process, whether the kernel has the native flags.
func Probe() Mode { return probeOnce() }
