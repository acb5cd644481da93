// Package setup is the setup face of the shim binary: it runs as pid 1 of a new
// container, inside the namespaces clone3 created, turns the plan into the
// container's environment and execs the user's entrypoint.
package setup

// Arg is argv[1] of the setup face.
const Arg = "__autokill_init"

// Main runs the setup face. It never returns.
func Main() { panic("setup: not implemented") }
