package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCtrMountPropagation: a hostPath volume with Kubernetes' three propagation modes, as CRI
// shapes them (critest's "Container Mount Propagation"): the host's source is an rshared (or
// rprivate) bind of itself; the container's bind is rbind plus rshared (Bidirectional, with
// rootfsPropagation rshared), rslave (HostToContainer, rootfsPropagation rslave) or rprivate. A
// mount the host makes under the source reaches the container unless private; a mount the
// container makes there reaches the host only when Bidirectional.
func TestCtrMountPropagation(t *testing.T) {
	for _, tc := range []struct {
		mode, rootfs, hostProp     string
		hostToContainer, toTheHost bool
	}{
		{"rshared", "rshared", "rshared", true, true},
		{"rslave", "rslave", "rshared", true, false},
		{"rprivate", "", "rprivate", false, false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "mnt")
			fromHost := filepath.Join(src, "fromhost")
			hostData := filepath.Join(dir, "hostdata")
			for _, d := range []string{fromHost, hostData} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(hostData, "flag"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mount(src, src, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Unmount(src, syscall.MNT_DETACH) })
			prop := uintptr(syscall.MS_SHARED)
			if tc.hostProp == "rprivate" {
				prop = syscall.MS_PRIVATE
			}
			if err := syscall.Mount("", src, "", prop|syscall.MS_REC, ""); err != nil {
				t.Fatal(err)
			}

			id := newContainerID(t)
			script := "while [ ! -e /go ]; do sleep 0.05; done; ls -A /vol/fromhost; grep ' /vol ' /proc/self/mountinfo; mkdir -p /vol/fromcontainer && mount --bind /etc /vol/fromcontainer && echo mounted"
			spec := shapeSpec(t, id, shapeRootfs(t), []string{"sh", "-c", script}, func(spec, proc, linux map[string]any) {
				spec["mounts"] = append(spec["mounts"].([]any), map[string]any{
					"destination": "/vol", "type": "bind", "source": src, "options": []string{"rbind", tc.mode},
				})
				if tc.rootfs != "" {
					linux["rootfsPropagation"] = tc.rootfs
				}
				caps := proc["capabilities"].(map[string]any)
				for _, set := range []string{"bounding", "effective", "permitted"} {
					caps[set] = append(caps[set].([]any), "CAP_SYS_ADMIN")
				}
			})
			done := make(chan ctrRun, 1)
			go func() {
				done <- ctrResult(t, "run", "--rm", "--runtime", runtimeName, "--config", writeSpec(t, spec), id)
			}()
			waitTaskStatus(t, id, "RUNNING", timeout(30*time.Second))
			// The host mounts under the source once the container runs.
			if err := syscall.Mount(hostData, fromHost, "", syscall.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Unmount(fromHost, syscall.MNT_DETACH) })
			mustCtr(t, "tasks", "exec", "--exec-id", "go", id, "touch", "/go")
			r := <-done
			out := r.Stdout
			if r.Code != 0 {
				t.Fatalf("container: %s", r)
			}
			if got := strings.Contains(out, "flag"); got != tc.hostToContainer {
				t.Errorf("host's mount seen in the container: %v, want %v\n%s", got, tc.hostToContainer, out)
			}
			entries, _ := os.ReadDir(filepath.Join(src, "fromcontainer"))
			if got := len(entries) > 0; got != tc.toTheHost {
				mi, _ := os.ReadFile("/proc/self/mountinfo")
				var host []string
				for _, l := range strings.Split(string(mi), "\n") {
					if strings.Contains(l, " "+src+" ") {
						host = append(host, l)
					}
				}
				t.Errorf("container's mount seen on the host: %v, want %v\ncontainer:\n%s\nhost:\n%s", got, tc.toTheHost, out, strings.Join(host, "\n"))
			}
			_ = syscall.Unmount(filepath.Join(src, "fromcontainer"), syscall.MNT_DETACH)
		})
	}
}
