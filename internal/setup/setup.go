// Package setup is the setup face of the shim binary: it runs as pid 1 of a new
// container, inside the namespaces clone3 created, turns the plan into the
// container's environment and execs the user's entrypoint.
//
// The daemon execs the shim binary with argv[1] == initsync.InitArg. On entry: fds 0-2 are
// the container's stdio, fd 3 is the initsync socket, nothing else is open;
// the process is in its new (or joined) namespaces and in its cgroup (v2), or
// the daemon moves it there before sending the plan (v1).
//
// Everything runs on the main goroutine, locked to the main thread by init:
// capabilities, PDEATHSIG, no_new_privs and the cgroup namespace are
// per-thread, and execve must come from the thread that holds them.
package setup

import (
	"fmt"
	"os"
	"runtime"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/autokill/containerd-shim-autokill-v1/internal/initsync"
	"github.com/autokill/containerd-shim-autokill-v1/internal/linux"
	"github.com/autokill/containerd-shim-autokill-v1/internal/seccomp"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == initsync.InitArg {
		runtime.LockOSThread()
	}
}

// Main runs the setup face. It never returns.
func Main() {
	// Before reading anything: from clone3 on, this process sits in the
	// container's pid namespace (a sibling's, for shared-pid pods) with
	// the host's privileges.
	conn := initsync.FromFd(initsync.ChildFd)
	if err := setNonDumpable(); err != nil {
		conn.Fail(err)
		os.Exit(1)
	}
	var plan spec.Plan
	if err := conn.RecvPlan(&plan); err != nil {
		// No plan (the daemon died or spoke nonsense): nothing to report to.
		os.Exit(1)
	}
	joined := false
	ex, err := Run(&plan, func() error { joined = true; return conn.RecvJoined() }, conn.SendConsole)
	if err != nil {
		conn.Fail(err)
		if !joined {
			// The daemon sends Joined after the plan whatever we do; a
			// socket closed with it unread makes the kernel report
			// ECONNRESET to the daemon ahead of our Fail. Take it first.
			awaitJoined(initsync.ChildFd, time.Second)
		}
		os.Exit(1)
	}
	if err := conn.Ready(); err != nil {
		os.Exit(1)
	}
	// EOF here is the daemon gone (Delete before Start, or a crash).
	if err := conn.RecvStart(); err != nil {
		os.Exit(1)
	}
	err = ex.exec(initsync.ChildFd)
	conn.Fail(err)
	os.Exit(1)
}

// Exec is what is left to do after Start: the entrypoint, resolved.
type Exec struct {
	Path            string
	Args            []string
	Env             []string
	NoNewPrivileges bool
	Fallback        bool
	// Seccomp is the filter still to load, with no_new_privs, right
	// before execve; nil when there is none or it is loaded already.
	Seccomp *seccomp.Filter
	// StartHooks are the startContainer hooks, run after Start in the
	// container, with its credentials and root, right before execve.
	StartHooks []spec.Hook
	HookState  *specs.State
}

// exec runs the last steps and execs the entrypoint; it returns only on error.
func (e *Exec) exec(syncFd int) error {
	if e.Fallback {
		if err := armPdeathsig(); err != nil {
			return err
		}
		if daemonGone(syncFd) {
			os.Exit(1)
		}
	}
	if err := containerHooks("startContainer", e.StartHooks, e.HookState, specs.StateCreated); err != nil {
		return err
	}
	// no_new_privs last: nothing after it needs to gain privileges, and
	// it must be set by the thread that calls execve.
	if e.NoNewPrivileges {
		if err := linux.Prctl("PR_SET_NO_NEW_PRIVS", unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return err
		}
	}
	if err := closeExtraFds(); err != nil {
		return err
	}
	// With no_new_privs the filter needs no privilege, so it comes last,
	// as runc loads it: only execve (and, if it fails, the write of the
	// error and exit_group) runs under it here, and the hooks above ran
	// without it.
	if e.Seccomp != nil {
		if err := e.Seccomp.Load(); err != nil {
			return err
		}
	}
	if err := unix.Exec(e.Path, e.Args, e.Env); err != nil {
		return fmt.Errorf("exec %q: %w", e.Path, os.NewSyscallError("execve", err))
	}
	return nil
}

// Run performs the setup recipe, in order, up to the point where the
// container waits for Start, and returns the resolved entrypoint. Each step
// says why it is where it is. On error the process is in an undefined state
// and must exit.
//
// joined blocks until the daemon has put the process into its cgroup (nil:
// already there); it is called once, before the first step that needs it.
// console hands the pty master to the daemon when the process has a
// terminal.
func Run(p *spec.Plan, joined func() error, console func(master *os.File) error) (*Exec, error) {
	inCgroup := false
	waitCgroup := func() error {
		if inCgroup || joined == nil {
			return nil
		}
		inCgroup = true
		if err := joined(); err != nil {
			return fmt.Errorf("wait for the cgroup: %w", err)
		}
		return nil
	}
	// Modes of what we create (device nodes, mount points) must be exact;
	// the container's umask is set at the end.
	unix.Umask(0)

	// Read while /proc is still the host's.
	last, err := linux.LastCap()
	if err != nil {
		return nil, err
	}

	// 1. The cgroup namespace must be unshared once we are in the
	// container's cgroup, so that it is the namespace's root (and of a
	// fresh cgroup mount): at the first cgroup mount, else before Ready.
	unshared := false
	cgroupNS := func() error {
		if err := waitCgroup(); err != nil {
			return err
		}
		if p.Namespaces.NewCgroupNS && !unshared {
			unshared = true
			return linux.Unshare(unix.CLONE_NEWCGROUP)
		}
		return nil
	}

	// oom_score_adj before capabilities are dropped: lowering it needs
	// CAP_SYS_RESOURCE. It is written through a private procfs instance
	// (writeProcFile), so neither the host's /proc nor the container's
	// matters.
	if p.OOMScoreAdj != nil {
		if err := setOOMScoreAdj(*p.OOMScoreAdj); err != nil {
			return nil, err
		}
	}

	// 2. Propagation first: our mount namespace is a copy of the host's,
	// with its shared peer groups. Making "/" slave (by default) means no
	// mount we do below can appear on the host, while host mounts still
	// propagate in.
	if err := setRootPropagation(p.RootPropagation, p.Root); err != nil {
		return nil, fmt.Errorf("root propagation: %w", err)
	}
	// pivot_root needs the new root to be a mount point.
	if err := linux.Mount(p.Root, p.Root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	// Opened after the bind: mounts go onto the new mount, not under it.
	r, err := openRoot(p.Root)
	if err != nil {
		return nil, err
	}
	defer r.Close()

	// 3. The spec's mounts, in order (a later one may go inside an earlier
	// one, /dev/pts in /dev). Targets are resolved inside the rootfs.
	var cgroups *cgroupLayout
	for i, m := range p.Mounts {
		if (m.Type == "cgroup" || m.Type == "cgroup2") && cgroups == nil {
			if err := cgroupNS(); err != nil {
				return nil, fmt.Errorf("mounts[%d]: %w", i, err)
			}
			// The host layout, seen before pivot_root hides it.
			if cgroups, err = probeCgroups(p.Namespaces.NewCgroupNS); err != nil {
				return nil, fmt.Errorf("mounts[%d]: cgroup: %w", i, err)
			}
		}
		if err := r.mount(m, cgroups); err != nil {
			return nil, fmt.Errorf("mounts[%d]: %w", i, err)
		}
	}

	// 4. /dev, unless it is a bind of the host's: after the mounts, so
	// the nodes land in the spec's /dev tmpfs, and before pivot_root, so
	// the host's nodes can be bound when mknod is not allowed.
	if p.SetupDev {
		if err := r.createDevices(p.Devices); err != nil {
			return nil, err
		}
		if err := r.createDevSymlinks(); err != nil {
			return nil, fmt.Errorf("/dev symlinks: %w", err)
		}
	}
	// A missing cwd is created, as runc does, while the rootfs is still
	// writable (root.readonly comes next) and resolved inside it.
	cwd, err := r.mkdirAll(p.Process.Cwd)
	if err != nil {
		return nil, cwdError(p.Process.Cwd, err)
	}
	cwd.Close()
	r.Close()

	// Without cgroup mounts nothing above needed the cgroup; the
	// namespace still must be unshared inside it.
	if err := cgroupNS(); err != nil {
		return nil, err
	}
	if err := createContainerHooks(p); err != nil {
		return nil, err
	}

	// 5. From here on "/" is the container's: the host's tree is gone
	// from this mount namespace.
	if err := pivotRoot(p.Root); err != nil {
		return nil, err
	}
	// The terminal comes from the container's own devpts, so after
	// pivot_root, and before a read-only root, which may hold the
	// /dev/console it is bound on; the daemon copies between its master
	// and containerd.
	if p.Process.Terminal {
		if err := sendConsole(p.Process.ConsoleSize, true, console); err != nil {
			return nil, err
		}
	}
	if p.RootReadonly {
		if err := remountRootReadonly(); err != nil {
			return nil, fmt.Errorf("root.readonly: %w", err)
		}
	}

	// 6. Kernel parameters, through a private procfs instance that no
	// mount of the container can redirect (writeProcFile; sysctls act on
	// the writer's namespaces), before readonlyPaths and the masks, which
	// go onto handles resolved in the new root, never through its
	// /proc/self.
	if p.Hostname != "" {
		if err := unix.Sethostname([]byte(p.Hostname)); err != nil {
			return nil, os.NewSyscallError("sethostname", err)
		}
	}
	if p.Domainname != "" {
		if err := unix.Setdomainname([]byte(p.Domainname)); err != nil {
			return nil, os.NewSyscallError("setdomainname", err)
		}
	}
	for _, s := range p.Sysctl {
		if err := writeProcFile("/proc/sys/"+s.Path, s.Value); err != nil {
			return nil, fmt.Errorf("sysctl %s=%s: %w", s.Key, s.Value, err)
		}
	}
	// The time namespace and its offsets: needs CAP_SYS_ADMIN and
	// CAP_SYS_TIME, and no process may enter it before the entrypoint.
	if p.Namespaces.NewTimeNS {
		if err := unshareTimeNS(p.TimeOffsets); err != nil {
			return nil, err
		}
	}
	if err := readonlyPaths(p.ReadonlyPaths); err != nil {
		return nil, err
	}
	// Masks after read-only paths: a masked path inside a read-only one
	// (/proc/sys/...) still gets its mask.
	if err := maskPaths(p.MaskedPaths); err != nil {
		return nil, err
	}

	// 7.-9. The process itself: limits, credentials, cwd, entrypoint.
	if err := setPersonality(p.Personality); err != nil {
		return nil, err
	}
	ex, err := prepareProcess(&p.Process, p.Seccomp, last, p.Fallback)
	if err != nil {
		return nil, err
	}
	ex.StartHooks, ex.HookState = p.Hooks.StartContainer, p.Hooks.State
	return ex, nil
}

// prepareProcess applies what belongs to the process rather than to the
// container, for the init and for an exec alike, and resolves the
// entrypoint. It runs as root of the container's user namespace, with the
// capabilities it needs, in the container's root.
func prepareProcess(proc *spec.Process, filter *specs.LinuxSeccomp, last uint, fallback bool) (*Exec, error) {
	// 7. Limits, while we still have CAP_SYS_RESOURCE to raise them.
	if err := setRlimits(proc.Rlimits); err != nil {
		return nil, fmt.Errorf("process.rlimits: %w", err)
	}

	// Scheduler and I/O priority: per thread, kept across execve, and set
	// while the capabilities they need are still here.
	if err := applyProcessAttrs(proc); err != nil {
		return nil, err
	}

	// The AppArmor attr handle now, while a private procfs can still be
	// made (the capabilities below may drop CAP_SYS_ADMIN); written last.
	var aa *appArmorAttr
	if proc.ApparmorProfile != "" {
		var err error
		if aa, err = openAppArmorAttr(); err != nil {
			return nil, err
		}
		defer aa.Close()
	}

	// 8. Credentials. chdir first, as root, in case the user cannot
	// search a parent of the cwd; again after the switch so that a cwd
	// the user may not enter fails now, not at exec.
	cwdID, err := enterCwd(proc.Cwd)
	if err != nil {
		return nil, err
	}
	if err := giveStdio(proc.UID); err != nil { // stdio_owner.go
		return nil, err
	}
	rearm := func() error {
		if !fallback {
			return nil
		}
		// set*id cleared PDEATHSIG; a daemon that died meanwhile is
		// seen on the socket (getppid() is 0 in a new pid namespace).
		if err := armPdeathsig(); err != nil {
			return err
		}
		if daemonGone(initsync.ChildFd) {
			os.Exit(1)
		}
		return nil
	}
	// The filter is compiled here, so that a profile libseccomp refuses
	// fails the Create (for an exec, before any of it runs), never the
	// init's Start. Without no_new_privs, loading it takes CAP_SYS_ADMIN:
	// it is loaded now, before the credentials change, as runc does, and
	// set*id, capset and everything up to execve run under it.
	var compiled *seccomp.Filter
	if filter != nil {
		var err error
		if compiled, err = seccomp.Compile(filter); err != nil {
			return nil, err
		}
		if !proc.NoNewPrivileges {
			// What the setup face still does needs a procfs of its
			// own (the capabilities drop lists its threads there):
			// made now, as a profile denies fsopen to a container
			// without CAP_SYS_ADMIN (containerd's RuntimeDefault).
			if _, err := openTaskDir(); err != nil {
				compiled.Release()
				return nil, err
			}
			err := compiled.Load()
			compiled.Release()
			compiled = nil
			if err != nil {
				return nil, err
			}
		}
	}
	if caps := proc.Capabilities; caps != nil {
		// On every thread, before anything below reads what the
		// container controls.
		if err := dropCaps(caps, last, proc, rearm); err != nil {
			return nil, err
		}
	} else {
		if err := switchUser(proc); err != nil {
			return nil, fmt.Errorf("process.user: %w", err)
		}
		if err := rearm(); err != nil {
			return nil, err
		}
	}
	if err := reenterCwd(proc.Cwd, cwdID); err != nil {
		return nil, err
	}
	umask := uint32(0o022)
	if proc.Umask != nil {
		umask = *proc.Umask
	}
	unix.Umask(int(umask))

	// 9. Resolve the entrypoint now, with the container's PATH, root,
	// cwd and credentials, so a missing one fails Create, not Start.
	path, err := lookPath(proc.Args[0], proc.Env)
	if err != nil {
		return nil, err
	}

	// 10. AppArmor last, on the thread that execs, with the final
	// credentials (procfs takes an attr write only from a file opened
	// with the writer's credentials). A profile that is not loaded fails
	// here, at Create or the exec, as runc's create does; the kernel
	// keeps the profile for this thread's execve, set*id calls and hooks
	// in between notwithstanding.
	if aa != nil {
		if err := aa.changeOnExec(proc.ApparmorProfile); err != nil {
			return nil, err
		}
	}
	return &Exec{
		Path:            path,
		Args:            proc.Args,
		Env:             proc.Env,
		NoNewPrivileges: proc.NoNewPrivileges,
		Fallback:        fallback,
		Seccomp:         compiled,
	}, nil
}

// awaitJoined reads and drops the one message the daemon still sends after
// the plan, waiting at most d (or until the daemon hangs up).
func awaitJoined(fd int, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		var buf [256]byte
		_, _ = unix.Read(fd, buf[:])
		return
	}
}
