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

	"github.com/autokill/containerd-shim-autokill-v1/internal/cgroups"
	"github.com/autokill/containerd-shim-autokill-v1/internal/mountopt"
	"github.com/autokill/containerd-shim-autokill-v1/internal/seccomp"
	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/pidfd"
	"github.com/autokill/containerd-shim-autokill-v1/pkg/process"
)

// featuresTypeURL is the type URL containerd registers for the OCI features
// document (core/runtime/typeurl.go): the value is its JSON.
var featuresTypeURL = "types.containerd.io/opencontainers/runtime-spec/" +
	strconv.Itoa(specs.VersionMajor) + "/features/Features"

// AnnotationCheckpoint says, in the features document and RuntimeInfo,
// that checkpoint and restore are not implemented.
const AnnotationCheckpoint = "io.containerd.autokill.checkpoint"

// checkpointNote is its value.
const checkpointNote = "not implemented: Checkpoint and restore answer NotImplemented (CRIU does not work on the kernels this shim targets)"

// ociFeatures is the OCI features document of the runtime, as `runc features`
// prints it for runc. Its lists come from the tables spec validation uses
// (mountopt.Options, spec.NamespaceTypes, spec.CapabilityNames, spec.Seccomp*) and the host
// facts Create checks (process.AppArmorEnabled), so it names exactly what a
// Create accepts: CRI turns features on from it.
func ociFeatures(mode pidfd.Mode) *features.Features {
	yes, no := true, false
	appArmor := process.AppArmorEnabled()
	// The host's, as Create sees it: systemd as the init, cgroup v2.
	systemd := cgroups.CheckSystemd() == nil
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		MountOptions:  mountopt.Names(),
		Hooks:         spec.HookNames(),
		Linux: &features.Linux{
			Namespaces:   spec.NamespaceTypes(),
			Capabilities: spec.CapabilityNames(),
			Cgroup: &features.Cgroup{
				V1:          &yes,
				V2:          &yes,
				Systemd:     &systemd,
				SystemdUser: &no,
				Rdma:        &no,
			},
			// The names NewPlan accepts; supportedFlags those this
			// libseccomp can set (the rest fail the Create).
			Seccomp: &features.Seccomp{
				Enabled:        &yes,
				Actions:        spec.SeccompActions(),
				Operators:      spec.SeccompOperators(),
				Archs:          spec.SeccompArchs(),
				KnownFlags:     spec.SeccompFlags(),
				SupportedFlags: seccomp.SupportedFlags(),
			},
			Apparmor:        &features.Apparmor{Enabled: &appArmor}, // the host's, as Create and Exec see it
			Selinux:         &features.Selinux{Enabled: &no},
			IntelRdt:        &features.IntelRdt{Enabled: &no},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &yes}},
			NetDevices:      &features.NetDevices{Enabled: &no},
		},
		Annotations: map[string]string{
			AnnotationMode:       mode.Name(),
			AnnotationCheckpoint: checkpointNote,
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
			AnnotationCheckpoint: checkpointNote,
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
