package integration

// process.apparmorProfile for the init and for execs (issue 8 point 1,
// issue 9). Where AppArmor is on (the VM tier) the profile confines the
// process; where it is off (this host) a profile is refused, never ignored.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The test profiles: all is allowed but writing below /tmp (A) or below
// /run (B). attach_disconnected as containerd's default profile has it:
// the stdio fifos the process inherits lie outside its mount namespace.
const (
	aaProfileA      = "autokill-test-deny-tmp"
	aaProfileB      = "autokill-test-deny-run"
	aaNotLoaded     = "autokill-test-never-loaded"
	aaProfileSource = `
profile ` + aaProfileA + ` flags=(attach_disconnected,mediate_deleted) {
  file,
  capability,
  network,
  signal,
  ptrace,
  unix,
  mount,
  umount,
  pivot_root,
  deny /tmp/** w,
}
profile ` + aaProfileB + ` flags=(attach_disconnected,mediate_deleted) {
  file,
  capability,
  network,
  signal,
  ptrace,
  unix,
  mount,
  umount,
  pivot_root,
  deny /run/** w,
}
`
)

// aaScript reports the process's AppArmor label and whether it may write
// below /tmp and below /run.
const aaScript = `echo "label: $(cat /proc/self/attr/apparmor/current 2>/dev/null || cat /proc/self/attr/current)"
if echo x > /tmp/aa-probe 2>/dev/null; then echo tmp-written; else echo tmp-denied; fi
if echo x > /run/aa-probe 2>/dev/null; then echo run-written; else echo run-denied; fi`

// hostAppArmor: the kernel enforces AppArmor (what the shim checks too).
func hostAppArmor() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && strings.TrimSpace(string(b)) == "Y"
}

// aaWant is what aaScript prints confined by profile ("" = unconfined).
func aaWant(profile string) []string {
	switch profile {
	case aaProfileA:
		return []string{"label: " + aaProfileA + " (enforce)\n", "tmp-denied\n", "run-written\n"}
	case aaProfileB:
		return []string{"label: " + aaProfileB + " (enforce)\n", "tmp-written\n", "run-denied\n"}
	}
	return []string{"label: unconfined\n", "tmp-written\n", "run-written\n"}
}

func checkAAOutput(t *testing.T, what, profile, out string) {
	t.Helper()
	for _, w := range aaWant(profile) {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q (want confined by %q):\n%s", what, w, profile, out)
		}
	}
}

// aaExec runs p as exec execID of container id through containerd's tasks
// API, as its Go client does, and returns its exit status and output, or
// the error of Exec or Start (the exec deleted again).
func aaExec(t *testing.T, id, execID string, p *specs.Process) (uint32, string, error) {
	t.Helper()
	ctx, tasks := tasksClient(t)
	out := filepath.Join(t.TempDir(), execID+".out")
	a, err := typeurl.MarshalAnyToProto(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tasks.Exec(ctx, &tasksapi.ExecProcessRequest{
		ContainerID: id, ExecID: execID, Spec: a, Stdout: "file://" + out, Stderr: "file://" + out,
	}); err != nil {
		return 0, "", fmt.Errorf("exec: %w", grpcErr(err))
	}
	defer func() {
		_, _ = tasks.DeleteProcess(ctx, &tasksapi.DeleteProcessRequest{ContainerID: id, ExecID: execID})
	}()
	if _, err := tasks.Start(ctx, &tasksapi.StartRequest{ContainerID: id, ExecID: execID}); err != nil {
		return 0, "", fmt.Errorf("start: %w", grpcErr(err))
	}
	w, err := tasks.Wait(ctx, &tasksapi.WaitRequest{ContainerID: id, ExecID: execID})
	if err != nil {
		t.Fatalf("wait for exec %s: %v", execID, err)
	}
	b, _ := os.ReadFile(out)
	return w.ExitStatus, string(b), nil
}

func aaProcess(profile string, args ...string) *specs.Process {
	return &specs.Process{Args: args, Env: []string{"PATH=/bin:/usr/bin:/sbin:/usr/sbin"}, Cwd: "/", ApparmorProfile: profile}
}

// TestAPIAppArmorProfile: an init and execs with process.apparmorProfile
// run confined by that profile where AppArmor is on: their label says so,
// and what the profile denies fails while the rest works. An exec gets the
// profile its process object names: ctr task exec copies the container's,
// one naming another gets that one, one naming none runs unconfined (as
// with runc). A profile that is not loaded fails the create or
// the exec, with nothing left behind. Where AppArmor is off, the profile
// is refused: FailedPrecondition with ours, before anything runs.
func TestAPIAppArmorProfile(t *testing.T) {
	t.Run("refused without AppArmor", func(t *testing.T) {
		if hostAppArmor() {
			t.Skip("AppArmor is enabled on this host: the refusal is for hosts without it")
		}
		testAppArmorRefused(t)
	})
	t.Run("confined", func(t *testing.T) {
		if !hostAppArmor() {
			t.Skip("AppArmor is not enabled on this host (/sys/module/apparmor/parameters/enabled): " +
				"confinement is checked where it is (the VM tier, Linux 7.2 with AppArmor built in)")
		}
		testAppArmorConfined(t)
	})
}

func testAppArmorRefused(t *testing.T) {
	id := newContainerID(t)
	r := ctrResult(t, runArgs([]string{"--rm", "--apparmor-profile", aaProfileA}, id, "sh", "-c", "echo ran")...)
	if r.Code == 0 || strings.Contains(r.Stdout, "ran") {
		t.Fatalf("a container with an AppArmor profile ran on a host without AppArmor: %s", r)
	}
	if runtimeName == autokillRT {
		for _, w := range []string{"process.apparmorProfile", "AppArmor is not enabled", "failed precondition"} {
			if !strings.Contains(r.Stderr, w) {
				t.Errorf("the refusal does not say %q: %s", w, r)
			}
		}
	} else if !strings.Contains(strings.ToLower(r.Stderr), "apparmor") {
		// runc 1.1 does not check: its write to attr/exec fails (EINVAL,
		// no LSM takes it) and fails the create.
		t.Errorf("runc's failure does not name AppArmor: %s", r)
	}
	t.Logf("refused at create: %s", strings.TrimSpace(r.Stderr))
	assertNothingLeft(t, id, "/"+testNamespace+"/"+id)

	// An exec naming a profile, in a container without one.
	id = newContainerID(t)
	runDetached(t, id, 1, nil, "exec sleep 1000")
	_, out, err := aaExec(t, id, "aa", aaProcess(aaProfileA, "sh", "-c", "echo ran"))
	switch {
	case err == nil:
		t.Fatalf("an exec with an AppArmor profile ran on a host without AppArmor:\n%s", out)
	case runtimeName == autokillRT:
		if !strings.HasPrefix(err.Error(), "exec: ") || codeOf(err) != "FailedPrecondition" ||
			!strings.Contains(err.Error(), "process.apparmorProfile") {
			t.Errorf("exec: %v (%s), want FailedPrecondition at Exec naming process.apparmorProfile", err, codeOf(err))
		}
	case !strings.Contains(strings.ToLower(err.Error()), "apparmor"):
		t.Errorf("runc's failure does not name AppArmor: %v", err)
	}
	t.Logf("refused exec: %v", err)
	if pids := taskPids(t, id); len(pids) != 1 {
		t.Errorf("processes after the refused exec: %v, want the init only", pids)
	}
}

func testAppArmorConfined(t *testing.T) {
	parser, err := exec.LookPath("apparmor_parser")
	if err != nil {
		t.Skip("AppArmor is on but apparmor_parser is missing (Debian's apparmor package, hack/deps.sh): no way to load the test profiles")
	}
	if _, err := os.Stat("/sys/kernel/security/apparmor"); err != nil {
		t.Fatalf("AppArmor is on but securityfs has no apparmor directory (hack/vm/init mounts securityfs): %v", err)
	}
	src := filepath.Join(t.TempDir(), "profiles")
	if err := os.WriteFile(src, []byte(aaProfileSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(parser, "--skip-cache", "-r", src).CombinedOutput(); err != nil {
		t.Fatalf("apparmor_parser -r: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(parser, "--skip-cache", "-R", src).CombinedOutput(); err != nil {
			t.Logf("apparmor_parser -R: %v\n%s", err, out)
		}
	})

	// The init, through ctr run --apparmor-profile.
	id := newContainerID(t)
	r := ctrResult(t, runArgs([]string{"--rm", "--apparmor-profile", aaProfileA}, id, "sh", "-c", aaScript)...)
	if r.Code != 0 {
		t.Fatalf("ctr run: %s", r)
	}
	checkAAOutput(t, "init", aaProfileA, r.Stdout)

	// Execs in a confined container.
	id = newContainerID(t)
	runDetached(t, id, 1, []string{"--apparmor-profile", aaProfileA}, "exec sleep 1000")
	// ctr task exec sends the container's process object: its profile.
	if r := execIn(t, id, "ctr", nil, "sh", "-c", aaScript); r.Code != 0 {
		t.Errorf("ctr task exec: %s", r)
	} else {
		checkAAOutput(t, "ctr task exec", aaProfileA, r.Stdout)
	}
	for _, tc := range []struct{ execID, profile, want string }{
		// The process object is the whole of it: no profile, none
		// (runc's rule; ctr and CRI copy the container's into it).
		{"none", "", ""},
		{"own", aaProfileB, aaProfileB},
	} {
		status, out, err := aaExec(t, id, tc.execID, aaProcess(tc.profile, "sh", "-c", aaScript))
		if err != nil || status != 0 {
			t.Errorf("exec %s: status %d, %v\n%s", tc.execID, status, err, out)
			continue
		}
		checkAAOutput(t, "exec "+tc.execID, tc.want, out)
	}
	// A profile that is not loaded: the exec fails, nothing of it runs.
	if _, out, err := aaExec(t, id, "notloaded", aaProcess(aaNotLoaded, "sh", "-c", "echo ran")); err == nil {
		t.Errorf("an exec with a profile that is not loaded ran:\n%s", out)
	} else if runtimeName == autokillRT && (!strings.Contains(err.Error(), aaNotLoaded) || !strings.Contains(err.Error(), "no such profile is loaded")) {
		t.Errorf("exec with a profile that is not loaded: %v", err)
	} else {
		t.Logf("exec with a profile that is not loaded: %v", err)
	}
	if pids := taskPids(t, id); len(pids) != 1 {
		t.Errorf("processes after the failed exec: %v, want the init only", pids)
	}

	// The same for the init: the create fails, nothing is left.
	id = newContainerID(t)
	r = ctrResult(t, runArgs([]string{"--rm", "--apparmor-profile", aaNotLoaded}, id, "sh", "-c", "echo ran")...)
	if r.Code == 0 || strings.Contains(r.Stdout, "ran") {
		t.Fatalf("a container with a profile that is not loaded ran: %s", r)
	}
	if runtimeName == autokillRT && !strings.Contains(r.Stderr, "no such profile is loaded") {
		t.Errorf("the error does not say the profile is not loaded: %s", r)
	}
	t.Logf("create with a profile that is not loaded: %s", strings.TrimSpace(r.Stderr))
	assertNothingLeft(t, id, "/"+testNamespace+"/"+id)
}
