package shim

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/containerd/containerd/api/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
)

// featuresTypeURL is the type URL containerd registers for the OCI features
// document (core/runtime/typeurl.go): the value is its JSON.
var featuresTypeURL = "types.containerd.io/opencontainers/runtime-spec/" +
	strconv.Itoa(specs.VersionMajor) + "/features/Features"

// supportedMountOptions are the mount options of the spec the setup face maps
// onto mount(2) flags and propagation. The recursive attributes (rro, rnosuid
// ... through mount_setattr), tmpcopyup and nosymfollow are not listed: CRI
// turns features on from this list, so it only names what works. idmap and
// ridmap (id-mapped binds) are made by the daemon (pkg/process/userns.go).
var supportedMountOptions = []string{
	"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
	"idmap", "iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime",
	"noexec", "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime",
	"nosuid", "private", "rbind", "relatime", "remount", "ridmap", "ro", "rprivate",
	"rshared", "rslave", "runbindable", "rw", "shared", "silent", "slave",
	"strictatime", "suid", "sync", "unbindable",
}

// supportedNamespaces are the namespaces clone3 creates or setns joins.
// No time namespace yet. User namespaces work (new ones, and joined ones
// with a joined pid namespace), but "user" is not listed: with
// mountExtensions.idmap it makes containerd's CRI allow user-namespaced
// pods, whose containers join the pod's user namespace with a pid
// namespace of their own, which is NotImplemented yet. Without it CRI
// refuses such pods up front.
var supportedNamespaces = []string{"pid", "network", "ipc", "uts", "mount", "cgroup"}

// knownCapabilities is every capability of Linux up to CAP_CHECKPOINT_RESTORE.
var knownCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// ociFeatures is the OCI features document of the runtime, as `runc features`
// prints it for runc.
func ociFeatures(mode pidfd.Mode) *features.Features {
	yes, no := true, false
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		MountOptions:  supportedMountOptions,
		Linux: &features.Linux{
			Namespaces:   supportedNamespaces,
			Capabilities: knownCapabilities,
			Cgroup: &features.Cgroup{
				V1:          &yes,
				V2:          &yes,
				Systemd:     &no,
				SystemdUser: &no,
				Rdma:        &no,
			},
			Seccomp:         &features.Seccomp{Enabled: &no},
			Apparmor:        &features.Apparmor{Enabled: &no},
			Selinux:         &features.Selinux{Enabled: &no},
			IntelRdt:        &features.IntelRdt{Enabled: &no},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &yes}},
			NetDevices:      &features.NetDevices{Enabled: &no},
		},
		Annotations: map[string]string{
			AnnotationMode: mode.Name(),
		},
	}
}

// runtimeInfo is the answer to -info. options, when not nil, are the runtime
// options containerd passed on stdin; they are echoed like runc's shim does.
func runtimeInfo(mode pidfd.Mode, options *anypb.Any) (*types.RuntimeInfo, error) {
	feat, err := json.Marshal(ociFeatures(mode))
	if err != nil {
		return nil, err
	}
	version, revision := versionInfo()
	return &types.RuntimeInfo{
		Name:     RuntimeName,
		Version:  &types.RuntimeVersion{Version: version, Revision: revision},
		Options:  options,
		Features: &anypb.Any{TypeUrl: featuresTypeURL, Value: feat},
		Annotations: map[string]string{
			AnnotationMode:       mode.Name(),
			AnnotationModeReason: mode.Reason,
		},
	}, nil
}

// runInfo is the -info face. containerd 2.x writes the runtime options (a
// protobuf Any, possibly empty) on stdin and reads a protobuf RuntimeInfo.
func runInfo(stdin *os.File, stdout io.Writer) error {
	var options *anypb.Any
	if in := readStdin(stdin); len(in) > 0 {
		var a anypb.Any
		if err := proto.Unmarshal(in, &a); err == nil && a.GetTypeUrl() != "" {
			options = &a
		}
	}
	info, err := runtimeInfo(pidfd.Probe(), options)
	if err != nil {
		return err
	}
	b, err := proto.Marshal(info)
	if err != nil {
		return fmt.Errorf("marshal runtime info: %w", err)
	}
	_, err = stdout.Write(b)
	return err
}
