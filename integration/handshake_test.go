package integration

// The start handshake as each containerd version really speaks it. Every form works with every
// containerd that accepts it, so a shim that fell back to the plain address would still run
// containers: only a record of the real exchange shows which form was used. A recording wrapper
// stands in for the runtime binary (containerd takes an absolute path as the runtime name) and
// passes each call through to the real shim.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrap "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"google.golang.org/protobuf/proto"
)

// Start answer forms, as docs/design.md and pkg/shim/start.go name them; the version is the task
// API version the shim offers (3: task v3, which lets containerd 2.x reuse a sandbox's shim).
const (
	formPlain      = "plain address"
	formJSON       = "JSON version 2"
	formJSONv3     = "JSON version 3"
	formProtobuf   = "protobuf BootstrapResult version 2"
	formProtobufv3 = "protobuf BootstrapResult version 3"
)

// wantAnswer is the form the runtime under test answers containerd major.minor with. The runc
// column is containerd's own containerd-shim-runc-v2 of the same version (measured, not assumed).
func wantAnswer(major, minor int) (string, error) {
	v := major*100 + minor
	if runtimeName == autokillRT {
		switch {
		case v < 107:
			return formPlain, nil // 1.6 reads only an address
		case v < 203:
			return formJSON, nil // 1.7, 2.0-2.2 set MAX_SHIM_VERSION
		default:
			return formProtobuf, nil // 2.3+ write BootstrapParams on stdin
		}
	}
	if runtimeName == "io.containerd.runc.v2" {
		switch {
		case v < 200:
			return formPlain, nil
		case v < 203:
			return formJSONv3, nil
		default:
			return formProtobufv3, nil
		}
	}
	return "", fmt.Errorf("no expected start answer for runtime %s", runtimeName)
}

// shimCall is one recorded invocation of the runtime binary.
type shimCall struct {
	dir    string
	args   []string
	env    map[string]string
	stdin  []byte
	stdout []byte
}

func (c shimCall) action() string {
	if len(c.args) == 0 {
		return ""
	}
	return c.args[len(c.args)-1]
}

// recordingRuntime writes a wrapper script that records every call into a directory of its own
// and then runs real with the same arguments, environment, working directory and stdin. stdout
// goes through a file, not a pipe: the shim daemon that `start` leaves behind must not hold the
// pipe containerd reads the answer from.
func recordingRuntime(t *testing.T, real string) (wrapper, calls string) {
	t.Helper()
	dir := t.TempDir()
	calls = filepath.Join(dir, "calls")
	if err := os.Mkdir(calls, 0o700); err != nil {
		t.Fatal(err)
	}
	// The name must not contain "shim-runc-v1": containerd 2.x sends such a binary the old stdin.
	wrapper = filepath.Join(dir, "containerd-shim-recorder-v1")
	script := fmt.Sprintf(`#!/bin/sh
c=$(mktemp -d %[1]s/call.XXXXXX) || exit 1
printf '%%s\n' "$@" >"$c/args"
env >"$c/env"
cat >"$c/stdin"
%[2]s "$@" <"$c/stdin" >"$c/stdout"
rc=$?
cat "$c/stdout"
exit $rc
`, shellQuote(calls), shellQuote(real))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper, calls
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func readCalls(t *testing.T, dir string) []shimCall {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []shimCall
	for _, e := range ents {
		c := shimCall{dir: filepath.Join(dir, e.Name()), env: map[string]string{}}
		read := func(name string) []byte {
			b, err := os.ReadFile(filepath.Join(c.dir, name))
			if err != nil {
				t.Fatalf("recorded call %s: %v", c.dir, err)
			}
			return b
		}
		c.args = strings.Split(strings.TrimSuffix(string(read("args")), "\n"), "\n")
		for _, l := range strings.Split(string(read("env")), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				c.env[k] = v
			}
		}
		c.stdin, c.stdout = read("stdin"), read("stdout")
		out = append(out, c)
	}
	return out
}

// answerForm classifies what `start` printed.
func answerForm(out []byte) (form, address string, err error) {
	s := strings.TrimSpace(string(out))
	switch {
	case strings.HasPrefix(s, "unix://"):
		return formPlain, s, nil
	case strings.HasPrefix(s, "{"):
		var j struct {
			Version  int    `json:"version"`
			Address  string `json:"address"`
			Protocol string `json:"protocol"`
		}
		if err := json.Unmarshal(out, &j); err != nil {
			return "", "", fmt.Errorf("JSON answer %q: %v", s, err)
		}
		if j.Protocol != "ttrpc" {
			return "", "", fmt.Errorf("JSON answer %q: protocol %q, want ttrpc", s, j.Protocol)
		}
		switch j.Version {
		case 2:
			return formJSON, j.Address, nil
		case 3:
			return formJSONv3, j.Address, nil
		}
		return "", "", fmt.Errorf("JSON answer %q: version %d", s, j.Version)
	}
	var r bootstrap.BootstrapResult
	if err := proto.Unmarshal(out, &r); err != nil || r.GetAddress() == "" {
		return "", "", fmt.Errorf("answer %q is neither an address, JSON nor a BootstrapResult (%v)", out, err)
	}
	if r.GetProtocol() != "ttrpc" {
		return "", "", fmt.Errorf("BootstrapResult %v: protocol %q, want ttrpc", &r, r.GetProtocol())
	}
	switch r.GetVersion() {
	case 2:
		return formProtobuf, r.GetAddress(), nil
	case 3:
		return formProtobufv3, r.GetAddress(), nil
	}
	return "", "", fmt.Errorf("BootstrapResult %v: version %d", &r, r.GetVersion())
}

// TestAPIStartHandshake records containerd's start call and the shim's answer and checks both
// against the version table: 1.6 offers nothing and reads an address; 1.7 and 2.0-2.2 set
// MAX_SHIM_VERSION=2 and read JSON; 2.3+ also write BootstrapParams on stdin and read protobuf.
func TestAPIStartHandshake(t *testing.T) {
	real := shimPath
	if runtimeName != autokillRT {
		real = filepath.Join(binDir, "containerd-shim-runc-v2")
	}
	if err := isExecutable(real); err != nil {
		t.Fatalf("real shim of %s: %v", runtimeName, err)
	}
	want, err := wantAnswer(cd.major, cd.minor)
	if err != nil {
		t.Fatal(err)
	}
	wrapper, calls := recordingRuntime(t, real)
	id := newContainerID(t)
	r := ctrResult(t, "run", "--rm", "--runtime", wrapper, imageRef, id, "echo", "handshake-ok")
	if r.Code != 0 || r.Stdout != "handshake-ok\n" {
		t.Fatalf("ctr run through the recording wrapper: %s", r)
	}

	var starts []shimCall
	for _, c := range readCalls(t, calls) {
		if c.action() == "start" {
			starts = append(starts, c)
		}
	}
	if len(starts) != 1 {
		t.Fatalf("%d start calls recorded, want 1", len(starts))
	}
	c := starts[0]
	t.Logf("containerd %s, runtime %s: start %q, MAX_SHIM_VERSION=%q, %d bytes of stdin, answer %q",
		cd.version, runtimeName, c.args, c.env["MAX_SHIM_VERSION"], len(c.stdin), c.stdout)

	// What containerd offers: a property of containerd, the same for every runtime.
	wantMax := ""
	if cd.atLeast(1, 7) {
		wantMax = "2"
	}
	if got := c.env["MAX_SHIM_VERSION"]; got != wantMax {
		t.Errorf("containerd %s: MAX_SHIM_VERSION=%q, want %q", cd.version, got, wantMax)
	}
	var params bootstrap.BootstrapParams
	gotParams := len(c.stdin) > 0 && proto.Unmarshal(c.stdin, &params) == nil && params.GetInstanceID() != ""
	if gotParams != cd.atLeast(2, 3) {
		t.Errorf("containerd %s: BootstrapParams on stdin: %v, want %v (stdin %q)", cd.version, gotParams, cd.atLeast(2, 3), c.stdin)
	}
	if gotParams && (params.GetInstanceID() != id || params.GetNamespace() != testNamespace) {
		t.Errorf("BootstrapParams for %s/%s, want %s/%s", params.GetNamespace(), params.GetInstanceID(), testNamespace, id)
	}

	// What the shim answered.
	form, address, err := answerForm(c.stdout)
	if err != nil {
		t.Fatal(err)
	}
	if form != want {
		t.Errorf("containerd %s, runtime %s: start answered with a %s (%q), want a %s", cd.version, runtimeName, form, address, want)
	}
	if !strings.HasPrefix(address, "unix://") {
		t.Errorf("start address %q is not unix://", address)
	}
}
