// Package shim speaks containerd's shim v2 protocol: the start, delete, -info
// and -v faces, the daemon's bootstrap, the ttrpc task service and events.
package shim

// Main runs the face of the shim that os.Args asks for. It never returns.
func Main() { panic("shim: not implemented") }
