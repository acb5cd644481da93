package pidfd

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func testLauncher(t *testing.T) *launcher {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	l := &launcher{ours: os.NewFile(uintptr(fds[0]), "launcher"), theirs: fds[1]}
	t.Cleanup(l.close)
	return l
}

// The trampoline's failure report on the launcher's socket reads as the
// error it names; EOF and junk are errors too, never a pidfd.
func TestLauncherReceiveFailures(t *testing.T) {
	for _, c := range []struct {
		name, send, want string
	}{
		{"fail", `{"kind":"fail","error":"clone3 child: setns: errno 22"}`, "clone3 child: setns: errno 22"},
		{"junk", "x", "unexpected answer"},
		{"eof", "", "exited without an init"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := testLauncher(t)
			if c.send != "" {
				if _, err := unix.Write(l.theirs, []byte(c.send)); err != nil {
					t.Fatal(err)
				}
			}
			l.closeTheirs()
			fd, err := l.receive()
			if err == nil || !strings.Contains(err.Error(), c.want) || fd != -1 {
				t.Fatalf("receive = %d, %v; want an error with %q", fd, err, c.want)
			}
		})
	}
}

// A pidfd passed with the marker byte comes back close-on-exec, and its pid
// is read from the kernel.
func TestLauncherReceivePidfd(t *testing.T) {
	l := testLauncher(t)
	self, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		t.Fatalf("pidfd_open: %v", err)
	}
	defer unix.Close(self)
	if err := unix.Sendmsg(l.theirs, []byte{'p'}, unix.UnixRights(self), nil, 0); err != nil {
		t.Fatal(err)
	}
	fd, err := l.receive()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("received pidfd flags %#x (%v): not close-on-exec", flags, err)
	}
	pid, err := pidOfPidfd(fd)
	if err != nil || pid != os.Getpid() {
		t.Errorf("pidOfPidfd = %d, %v; want %d", pid, err, os.Getpid())
	}
	if _, err := pidOfPidfd(int(l.ours.Fd())); err == nil {
		t.Error("pidOfPidfd of a socket: no error")
	}
}
