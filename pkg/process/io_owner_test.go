package process

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func owner(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

// The stdio fifos of a container with IoUid/IoGid (init and execs) change
// owner; /dev/null, regular files and other containers' fifos do not.
func TestApplyIOOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	// No client reads these fifos: our own reader completes the open.
	old := fifoReaderWait
	fifoReaderWait = 10 * time.Millisecond
	defer func() { fifoReaderWait = old }()
	dir := t.TempDir()
	fifo := func(name string) string {
		p := filepath.Join(dir, name)
		if err := syscall.Mkfifo(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := filepath.Join(dir, "log")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	setIOOwner("c1", 1000, 1001)
	defer forgetIOOwner("c1")
	ctx := context.Background()
	open := func(id, in, out, errp string) {
		t.Helper()
		s, err := openStdio(ctx, id, "ns", in, out, errp)
		if err != nil {
			t.Fatal(err)
		}
		s.closeChild()
		s.close()
	}
	in, out, errp := fifo("in"), fifo("out"), fifo("err")
	open("c1", in, out, errp)
	for _, p := range []string{in, out, errp} {
		if u, g := owner(t, p); u != 1000 || g != 1001 {
			t.Errorf("%s: owner %d:%d, want 1000:1001", p, u, g)
		}
	}
	// An exec of c1: its own fifos, same owner.
	execOut := fifo("exec-out")
	open("c1/e1", "", execOut, file)
	if u, g := owner(t, execOut); u != 1000 || g != 1001 {
		t.Errorf("exec fifo: owner %d:%d, want 1000:1001", u, g)
	}
	if u, g := owner(t, file); u != 0 || g != 0 {
		t.Errorf("regular file: owner %d:%d, want it untouched", u, g)
	}
	if u, _ := owner(t, os.DevNull); u != 0 {
		t.Errorf("/dev/null changed owner: %d", u)
	}
	other := fifo("other")
	open("c2", "", other, "")
	if u, g := owner(t, other); u != 0 || g != 0 {
		t.Errorf("another container's fifo: owner %d:%d", u, g)
	}
	// 0:0 records nothing.
	setIOOwner("c3", 0, 0)
	if _, ok := ioOwners.Load("c3"); ok {
		t.Error("0:0 recorded")
	}
}
