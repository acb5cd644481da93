package integration

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// seccompScript tries the denied mkdir, shows its errno, and shows that the
// rest still works (a file is made in the same directory).
const seccompScript = `mkdir /tmp/denied 2>&1; echo "mkdir=$?"; test -d /tmp/denied || echo nodir; ` +
	`echo x > /tmp/allowed && cat /tmp/allowed && echo alive`

// denyMkdir is a profile that allows everything but mkdir and mkdirat,
// which fail with errno 38 (ENOSYS, "Function not implemented"): an errno
// no filesystem gives for mkdir, so only the filter can have returned it.
func denyMkdir() map[string]any {
	return map[string]any{
		"defaultAction": "SCMP_ACT_ALLOW",
		"architectures": []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"},
		"syscalls": []map[string]any{
			{"names": []string{"mkdir", "mkdirat"}, "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
		},
	}
}

func checkSeccompDenied(t *testing.T, what, out string) {
	t.Helper()
	for _, w := range []string{"Function not implemented", "mkdir=1", "nodir", "x\nalive"} {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q (mkdir must fail with errno 38 and the rest run on):\n%s", what, w, out)
		}
	}
}

// TestAPISeccompProfile: linux.seccomp is loaded into the init and into
// every exec (the container's filter, as runc applies it to exec'd
// processes): the denied syscalls fail with the profile's errnoRet and
// the container runs on. An unknown action is refused at create.
func TestAPISeccompProfile(t *testing.T) {
	// With no_new_privs the filter is loaded last; without it, before the
	// capabilities drop (it then needs CAP_SYS_ADMIN): both must hold.
	for _, nnp := range []bool{true, false} {
		t.Run("init nnp="+strconv.FormatBool(nnp), func(t *testing.T) {
			id := newContainerID(t)
			r := runSpecRm(t, id, apiSpec(t, id, []string{"sh", "-c", seccompScript + "; grep NoNewPrivs /proc/self/status"}, func(spec, proc, linux map[string]any) {
				linux["seccomp"] = denyMkdir()
				proc["noNewPrivileges"] = nnp
			}))
			if r.Code != 0 {
				t.Fatalf("ctr run: %s", r)
			}
			checkSeccompDenied(t, "init", r.Stdout)
			want := "NoNewPrivs:\t0"
			if nnp {
				want = "NoNewPrivs:\t1"
			}
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("no_new_privs is not %v (the filter must not set it):\n%s", nnp, r.Stdout)
			}
		})
	}
	t.Run("exec", func(t *testing.T) {
		id := newContainerID(t)
		spec := apiSpec(t, id, []string{"sh", "-c", "exec sleep 1000"}, func(spec, proc, linux map[string]any) {
			linux["seccomp"] = denyMkdir()
		})
		if r := ctrResult(t, "run", "-d", "--runtime", runtimeName, "--config", writeSpec(t, spec), id); r.Code != 0 {
			t.Fatalf("ctr run -d: %s", r)
		}
		waitTaskStatus(t, id, "RUNNING", timeout(30*time.Second))
		// The exec's process object has no seccomp of its own: the
		// container's applies.
		// Both load points: before the credentials change (no
		// no_new_privs) and right before execve.
		for _, nnp := range []bool{false, true} {
			p := aaProcess("", "sh", "-c", seccompScript)
			p.NoNewPrivileges = nnp
			execID := "sc-nnp-" + strconv.FormatBool(nnp)
			status, out, err := aaExec(t, id, execID, p)
			if err != nil || status != 0 {
				t.Fatalf("exec %s: status %d, %v\n%s", execID, status, err, out)
			}
			checkSeccompDenied(t, "exec "+execID, out)
		}
		if pids := taskPids(t, id); len(pids) != 1 {
			t.Errorf("processes after the exec: %v, want the init only", pids)
		}
	})
	t.Run("unknown action", func(t *testing.T) {
		id := newContainerID(t)
		r := runSpecRm(t, id, apiSpec(t, id, []string{"sh", "-c", "echo ran"}, func(spec, proc, linux map[string]any) {
			p := denyMkdir()
			p["syscalls"].([]map[string]any)[0]["action"] = "SCMP_ACT_SOMETIMES"
			linux["seccomp"] = p
		}))
		if r.Code == 0 || strings.Contains(r.Stdout, "ran") {
			t.Fatalf("a container with an unknown seccomp action ran: %s", r)
		}
		if runtimeName == autokillRT && (!strings.Contains(r.Stderr, "linux.seccomp.syscalls[0].action") || !strings.Contains(r.Stderr, "invalid argument")) {
			t.Errorf("the refusal does not name the field as InvalidArgument: %s", r)
		}
		t.Logf("refused: %s", strings.TrimSpace(r.Stderr))
		assertNothingLeft(t, id, "/"+testNamespace+"/"+id)
	})
}

// TestAPISeccompCtrDefault: ctr run --seccomp (containerd's default
// profile) runs the container, and what the profile keeps from a container
// without CAP_SYS_ADMIN fails: unshare(CLONE_NEWUSER), which needs no
// capability at all without the filter (checked first, so the failure is
// the filter's).
func TestAPISeccompCtrDefault(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil {
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n == 0 {
			t.Skip("user.max_user_namespaces is 0: unshare -U fails with or without a filter")
		}
	}
	const script = "unshare -U true 2>&1; echo unshare=$?; echo alive"
	id := newContainerID(t)
	r := ctrResult(t, runArgs([]string{"--rm"}, id, "sh", "-c", script)...)
	if r.Code != 0 || !strings.Contains(r.Stdout, "unshare=0") {
		t.Fatalf("without a profile unshare -U must work (no capability needed): %s", r)
	}
	id = newContainerID(t)
	r = ctrResult(t, runArgs([]string{"--rm", "--seccomp"}, id, "sh", "-c", script)...)
	if r.Code != 0 {
		t.Fatalf("ctr run --seccomp: %s", r)
	}
	for _, w := range []string{"Operation not permitted", "unshare=1", "alive"} {
		if !strings.Contains(r.Stdout, w) {
			t.Errorf("with containerd's default profile, output lacks %q:\n%s", w, r.Stdout)
		}
	}
}

// TestAPISeccompDefaultWithoutNoNewPrivs: CRI's RuntimeDefault profile on a container without
// noNewPrivileges and without CAP_SYS_ADMIN (every Kubernetes pod by default). The filter is then
// loaded before the capabilities drop, and the steps that follow it in the setup face must not need
// what it denies (fsopen, mount...). The profile still applies: unshare -U fails.
func TestAPISeccompDefaultWithoutNoNewPrivs(t *testing.T) {
	probe := newContainerID(t)
	mustCtr(t, "containers", "create", "--runtime", runtimeName, "--seccomp", imageRef, probe)
	profile := containerSpec(t, probe)["linux"].(map[string]any)["seccomp"]
	if profile == nil {
		t.Fatal("ctr containers create --seccomp gave no linux.seccomp")
	}
	removeContainer(t, probe)

	id := newContainerID(t)
	spec := shapeSpec(t, id, shapeRootfs(t), []string{"sh", "-c", "unshare -U true 2>&1; echo unshare=$?; grep NoNewPrivs /proc/self/status"},
		func(_, proc, linux map[string]any) {
			proc["noNewPrivileges"] = false
			linux["seccomp"] = profile
		})
	r := runSpecRm(t, id, spec)
	if r.Code != 0 {
		t.Fatalf("RuntimeDefault without noNewPrivileges: %s", r)
	}
	for _, w := range []string{"Operation not permitted", "unshare=1", "NoNewPrivs:\t0"} {
		if !strings.Contains(r.Stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, r)
		}
	}
}
