package process

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestOpenFifoWriterLateReader: a client whose reader reaches open(2) only
// after a short-lived process has written and exited still gets the
// output and EOF (with the shim's reader opened first, the client's open
// waited for a writer that never came again, and the output was lost).
func TestOpenFifoWriterLateReader(t *testing.T) {
	p := filepath.Join(t.TempDir(), "stdout")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		f, err := os.OpenFile(p, os.O_RDONLY, 0) // blocking, as containerd's fifo package does
		if err != nil {
			got <- "open: " + err.Error()
			return
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			got <- "read: " + err.Error()
			return
		}
		got <- string(b)
	}()
	child, keep, err := openFifoWriter(p)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	// The process: writes and exits at once.
	if _, err := child.WriteString("28\n"); err != nil {
		t.Fatal(err)
	}
	child.Close()
	select {
	case s := <-got:
		if s != "28\n" {
			t.Fatalf("client read %q, want %q", s, "28\n")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client's reader never got the output and EOF")
	}
}

// TestOpenFifoWriterNoReader: with no client reader at all, the open ends
// after fifoReaderWait with the shim's own reader, and writes succeed.
func TestOpenFifoWriterNoReader(t *testing.T) {
	defer func(d time.Duration) { fifoReaderWait = d }(fifoReaderWait)
	fifoReaderWait = 50 * time.Millisecond
	p := filepath.Join(t.TempDir(), "stdout")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	child, keep, err := openFifoWriter(p)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	defer child.Close()
	if _, err := child.WriteString("x"); err != nil {
		t.Fatalf("write with only the shim's reader: %v", err)
	}
}
