package integration

// Test harness: a private containerd per test binary run, the image imported into it, and
// helpers to drive ctr and to look at host processes. This file holds the binary's environment
// and TestMain; harness_containerd_test.go the private containerd, harness_ctr_test.go ctr and
// the containers and tasks it shows, harness_procs_test.go /proc scanning, harness_image_test.go
// the image tar, harness_host_test.go small utilities.
//
// Environment (the test binary's contract):
//
//	AUTOKILL_SHIM               absolute path of containerd-shim-autokill-v1; its directory goes first
//	                            on containerd's PATH. Required when AUTOKILL_RUNTIME is the autokill
//	                            runtime (the default); optional otherwise.
//	AUTOKILL_CONTAINERD_BIN_DIR directory holding containerd and ctr of the version under test (and,
//	                            for the runc reference runtime, containerd-shim-runc-v2). Required.
//	AUTOKILL_IMAGE_TAR          OCI image-layout tar of localhost/autokill/busybox:latest. Required.
//	AUTOKILL_RUNTIME            runtime under test, default io.containerd.autokill.v1
//	                            (io.containerd.runc.v2 validates the tests against the reference).
//	AUTOKILL_TIMEOUT_SCALE      integer factor for every liveness timeout (default 1; slow VMs: 10).
//	AUTOKILL_CONTAINERD_DEBUG   1: containerd log level debug (containerd then passes -debug to shims).
//	AUTOKILL_KEEP_DIR           1: keep the private containerd's directory after the run.
//
// The binary must run as root. It creates its containerd directory (root, state, sockets, log) with
// os.MkdirTemp, so under $TMPDIR (default /tmp), which must allow overlayfs (not an overlay itself).

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	testNamespace  = "autokill-test"
	imageRef       = "localhost/autokill/busybox:latest"
	autokillRT     = "io.containerd.autokill.v1"
	defaultRuntime = autokillRT
)

var (
	shimPath     string // AUTOKILL_SHIM (may be empty for a non-autokill runtime)
	binDir       string // AUTOKILL_CONTAINERD_BIN_DIR
	imageTar     string // AUTOKILL_IMAGE_TAR
	runtimeName  string // AUTOKILL_RUNTIME
	timeoutScale = 1
	cd           *containerd // the private containerd of this run
)

// timeout scales a liveness timeout by AUTOKILL_TIMEOUT_SCALE.
func timeout(d time.Duration) time.Duration { return d * time.Duration(timeoutScale) }

func TestMain(m *testing.M) {
	flag.Parse()
	code, err := mainSetupAndRun(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func mainSetupAndRun(m *testing.M) (int, error) {
	if err := readEnv(); err != nil {
		return 2, err
	}
	dir, err := os.MkdirTemp("", "autokill-it-")
	if err != nil {
		return 2, err
	}
	// Searchable like /run/containerd: the root of a user-namespaced
	// container (host uid 100000) must reach its bundle's rootfs.
	if err := os.Chmod(dir, 0o711); err != nil {
		return 2, err
	}
	cd = &containerd{binDir: binDir, dir: dir}
	if err := cd.configure(); err != nil {
		return 2, err
	}
	keep := os.Getenv("AUTOKILL_KEEP_DIR") == "1"
	failed := false
	defer func() {
		if failed {
			cd.dumpLog(os.Stderr, 200)
		}
		if err := cd.stop(syscall.SIGTERM); err != nil {
			fmt.Fprintf(os.Stderr, "integration: stopping containerd: %v\n", err)
		}
		cd.killShims()
		unmountUnder(dir)
		if keep {
			fmt.Printf("integration: kept %s\n", dir)
		} else if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "integration: removing %s: %v\n", dir, err)
		}
	}()

	if err := cd.start(); err != nil {
		failed = true
		return 1, err
	}
	fmt.Printf("integration: containerd %s (%s), server %s\n", cd.version, binDir, cd.serverVersion())
	fmt.Printf("integration: kernel %s, %s\n", kernelRelease(), cgroupLayout())
	fmt.Printf("integration: runtime %s, shim %q, image %s, dir %s\n", runtimeName, shimPath, imageTar, dir)

	out, errOut, code, err := cd.ctrRaw(timeout(2*time.Minute), "images", "import", imageTar)
	if err != nil || code != 0 {
		failed = true
		return 1, fmt.Errorf("ctr images import %s: exit %d, %v\nstdout:\n%s\nstderr:\n%s", imageTar, code, err, out, errOut)
	}
	out, _, code, _ = cd.ctrRaw(timeout(time.Minute), "images", "ls", "-q")
	if code != 0 || !containsLine(out, imageRef) {
		failed = true
		return 1, fmt.Errorf("image %s not listed after import; ctr images ls -q:\n%s", imageRef, out)
	}

	code = m.Run()
	if code != 0 {
		failed = true
		return code, nil
	}
	// Every test deletes its containers; their shims must be gone.
	if leaks := cd.waitNoShims(timeout(15 * time.Second)); len(leaks) > 0 {
		failed = true
		return 1, fmt.Errorf("shim processes left after all containers were deleted:\n%s", strings.Join(leaks, "\n"))
	}
	return 0, nil
}

func readEnv() error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (containers, mounts, cgroups)")
	}
	runtimeName = os.Getenv("AUTOKILL_RUNTIME")
	if runtimeName == "" {
		runtimeName = defaultRuntime
	}
	if s := os.Getenv("AUTOKILL_TIMEOUT_SCALE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("AUTOKILL_TIMEOUT_SCALE=%q: want an integer >= 1", s)
		}
		timeoutScale = n
	}
	shimPath = os.Getenv("AUTOKILL_SHIM")
	if shimPath == "" && runtimeName == autokillRT {
		return errors.New("AUTOKILL_SHIM is not set: absolute path of containerd-shim-autokill-v1 (e.g. $PWD/bin/containerd-shim-autokill-v1)")
	}
	if shimPath != "" {
		if !filepath.IsAbs(shimPath) {
			return fmt.Errorf("AUTOKILL_SHIM=%q is not an absolute path", shimPath)
		}
		if err := isExecutable(shimPath); err != nil {
			return fmt.Errorf("AUTOKILL_SHIM: %w", err)
		}
		if filepath.Base(shimPath) != "containerd-shim-autokill-v1" {
			return fmt.Errorf("AUTOKILL_SHIM=%q: the binary must be named containerd-shim-autokill-v1 for containerd to find it", shimPath)
		}
	}
	binDir = os.Getenv("AUTOKILL_CONTAINERD_BIN_DIR")
	if binDir == "" {
		return errors.New("AUTOKILL_CONTAINERD_BIN_DIR is not set: directory with containerd and ctr (hack/lib.sh's ak_bin_dir maps a version to it: /usr/bin for Debian's 1.6, $AUTOKILL_CACHE/containerd-<version>/bin for the others)")
	}
	for _, b := range []string{"containerd", "ctr"} {
		if err := isExecutable(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("AUTOKILL_CONTAINERD_BIN_DIR: %w", err)
		}
	}
	imageTar = os.Getenv("AUTOKILL_IMAGE_TAR")
	if imageTar == "" {
		return errors.New("AUTOKILL_IMAGE_TAR is not set: OCI image-layout tar of " + imageRef + " (hack/build-image.sh makes it)")
	}
	if st, err := os.Stat(imageTar); err != nil {
		return fmt.Errorf("AUTOKILL_IMAGE_TAR: %w", err)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("AUTOKILL_IMAGE_TAR=%q is not a regular file", imageTar)
	}
	return nil
}

func isExecutable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}
