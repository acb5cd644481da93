package spec

import (
	"go/build"
	"strings"
	"testing"
)

// TestPure: validation is pure, the contract of docs/design.md: the daemon
// and the setup face both run it, and a package of this module that acts on
// the system (mounts, cgroups, hooks, processes) must not creep into it.
// Only tables (internal/mountopt) may be shared.
func TestPure(t *testing.T) {
	const module = "github.com/autokill/containerd-shim-autokill-v1/"
	allowed := map[string]bool{module + "internal/mountopt": true}
	seen := map[string]bool{}
	var walk func(path, from string)
	walk = func(path, from string) {
		if seen[path] {
			return
		}
		seen[path] = true
		pkg, err := build.Import(path, ".", 0)
		if err != nil {
			t.Fatalf("%s (imported by %s): %v", path, from, err)
		}
		for _, imp := range pkg.Imports {
			switch {
			case imp == "os/exec":
				t.Errorf("%s imports os/exec", path)
			case strings.HasPrefix(imp, module):
				if !allowed[imp] {
					t.Errorf("%s imports %s: internal/spec must stay pure", path, imp)
					continue
				}
				walk(imp, path)
			}
		}
	}
	walk(module+"internal/spec", "the test")
}
