package process

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// readable tells whether a read on f would not block (data or EOF).
func readable(t *testing.T, f *os.File) bool {
	t.Helper()
	p := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
	n, err := unix.Poll(p, 50)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// The process's stdin fifo ends only when both the client's writer and
// the shim's (CloseIO) are closed, in either order.
func TestStdinEOFNeedsCloseIO(t *testing.T) {
	for _, closeIOFirst := range []bool{false, true} {
		dir := t.TempDir()
		in := filepath.Join(dir, "stdin")
		if err := syscall.Mkfifo(in, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := openStdio(context.Background(), "c", "ns", in, "", "")
		if err != nil {
			t.Fatal(err)
		}
		proc := s.child[0]
		client, err := os.OpenFile(in, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 8)
		if n, err := proc.Read(b); n != 1 || err != nil {
			t.Fatalf("read %d, %v", n, err)
		}
		first, second := client.Close, s.closeStdin
		if closeIOFirst {
			first, second = second, first
		}
		if err := first(); err != nil {
			t.Fatal(err)
		}
		if readable(t, proc) {
			t.Fatalf("closeIOFirst=%v: stdin ended with one writer still open", closeIOFirst)
		}
		if err := second(); err != nil {
			t.Fatal(err)
		}
		if n, err := proc.Read(b); n != 0 || err != io.EOF {
			t.Fatalf("closeIOFirst=%v: read %d, %v; want EOF", closeIOFirst, n, err)
		}
		if err := s.closeStdin(); err != nil {
			t.Errorf("second closeStdin: %v", err)
		}
		s.closeChild()
		if err := s.close(); err != nil {
			t.Error(err)
		}
	}
}

// stdin that is a regular file gets no writer; close drops the fifo's.
func TestStdinFileNoWriter(t *testing.T) {
	f := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(f, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := openStdio(context.Background(), "c", "ns", f, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	defer s.closeChild()
	if s.stdin != nil {
		t.Fatal("a writer was opened on a regular file")
	}
}

func TestLogURIErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plain")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uri  string
		want error
	}{
		{"binary:///no/such/logger", errdefs.ErrNotFound},
		{"binary://" + notExec, errdefs.ErrInvalidArgument},
		{"binary://" + dir, errdefs.ErrInvalidArgument},
		{"binary://relative", errdefs.ErrInvalidArgument},
		{"file://relative", errdefs.ErrInvalidArgument},
		{"fluent://host", errdefs.ErrNotImplemented},
	} {
		errp := tc.uri
		_, err := openStdio(context.Background(), "c", "ns", "", tc.uri, errp)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.uri, err, tc.want)
		}
	}
	// file:// creates the directory.
	log := filepath.Join(dir, "a", "b", "log")
	s, err := openStdio(context.Background(), "c", "ns", "", "file://"+log, "file://"+log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.child[1].Write([]byte("out\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.child[2].Write([]byte("err\n")); err != nil {
		t.Fatal(err)
	}
	s.closeChild()
	s.close()
	if b, _ := os.ReadFile(log); string(b) != "out\nerr\n" {
		t.Errorf("log %q", b)
	}
}
