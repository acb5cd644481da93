package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// ctrSpec is `ctr oci spec` (containerd's default spec: its device rules deny everything) for args
// on rootfs, with a PATH for the busybox image and the cgroup /<ns>/<id>. It returns the spec and
// its process and linux objects, for the caller to change.
func ctrSpec(t *testing.T, id, rootfs string, args []string) (spec, proc, linux map[string]any) {
	t.Helper()
	out := mustCtr(t, "oci", "spec")
	if err := json.Unmarshal([]byte(out), &spec); err != nil {
		t.Fatalf("ctr oci spec: %v\n%s", err, out)
	}
	spec["root"] = map[string]any{"path": rootfs}
	proc = spec["process"].(map[string]any)
	proc["args"] = args
	proc["env"] = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	linux = spec["linux"].(map[string]any)
	linux["cgroupsPath"] = "/" + testNamespace + "/" + id
	return spec, proc, linux
}

// writeSpec writes spec to a config.json of its own and returns its path (for ctr run --config).
func writeSpec(t *testing.T, spec map[string]any) string {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// runSpecRm runs the spec with ctr run --rm --config and returns what ctr reported.
func runSpecRm(t *testing.T, id string, spec map[string]any) ctrRun {
	t.Helper()
	return ctrResult(t, "run", "--rm", "--runtime", runtimeName, "--config", writeSpec(t, spec), id)
}
