// Package rtopts decodes the runtime options containerd sends with a task
// into what this runtime does with them. containerd sends one typeurl Any:
// runc's Options (containerd.runc.v1.Options: the task options of ctr and
// the Go client of 2.x, for any runtime), containerd 1.x's
// containerd.linux.runc.CreateOptions (the same, from a 1.x client to a
// runtime not named io.containerd.runc.*), or runtimeoptions.v1.Options
// (CRI's options for a runtime that is not runc, and ctr
// --runtime-config-path), whose ConfigPath or ConfigBody is a TOML document
// of this runtime's own options (File). The daemon decodes it in Create, the
// start face in the start handshake (for ShimCgroup).
//
// Pure data but for reading ConfigPath: no syscall acts on an option here.
package rtopts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	runcopts "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/pelletier/go-toml/v2"

	"github.com/autokill/containerd-shim-autokill-v1/internal/spec"
)

// TypeURL names this runtime's own options document; a runtimeoptions.v1
// TypeUrl (the message's or the document's) may be empty or this.
const TypeURL = "io.containerd.autokill.v1.Options"

// maxConfigFile bounds what is read of ConfigPath.
const maxConfigFile = 1 << 20

// Options is what this runtime honours of the runtime options.
type Options struct {
	// ShimCgroup is an existing cgroup (an absolute cgroupfs path) the shim
	// daemon is moved into by the start face, as containerd's runc shim
	// does.
	ShimCgroup string
	// IOUID and IOGID become the owner of the container's stdio fifos (init
	// and execs), as of runc's pipes: in a user namespace, an owner the
	// namespace maps lets the setup face give them to the process's user,
	// who can then reopen them (/dev/stdout). 0 and 0 leave them as
	// containerd made them.
	IOUID, IOGID uint32
	// SystemdCgroup selects the systemd cgroup driver: the container's
	// cgroup is a transient scope made through systemd's D-Bus API, and
	// linux.cgroupsPath is "slice:prefix:name" (internal/cgroups).
	SystemdCgroup bool
	// Ignored are the options that were set but mean nothing here: each is
	// logged as a warning (once per daemon), never dropped silently.
	Ignored []Ignored
}

// Ignored is an option that cannot apply, and why.
type Ignored struct {
	Option string // as runc's Options spell it (NoPivotRoot, BinaryName...)
	Reason string
}

// File is this runtime's options document, the TOML of runtimeoptions'
// ConfigPath or ConfigBody. Keys are spelled as in runc's CRI options
// (runtimes.X.options); any other key is InvalidArgument.
//
//	ShimCgroup = "/system.slice/autokill-shims"   # an existing cgroup for the shim daemon
//	IoUid = 1000                                   # owner of the stdio fifos
//	IoGid = 1000
//	SystemdCgroup = true                           # the systemd cgroup driver
//
// TypeUrl and ConfigPath are containerd's own keys: CRI copies the whole
// runtimes.X.options table into ConfigBody, so they may appear; TypeUrl must
// then be empty or TypeURL, ConfigPath empty (a document does not name
// another).
type File struct {
	TypeUrl       string `toml:"TypeUrl"` //nolint:revive // containerd's spelling
	ConfigPath    string `toml:"ConfigPath"`
	ShimCgroup    string `toml:"ShimCgroup"`
	IoUid         uint32 `toml:"IoUid"` //nolint:revive // runc's spelling
	IoGid         uint32 `toml:"IoGid"` //nolint:revive // runc's spelling
	SystemdCgroup bool   `toml:"SystemdCgroup"`
}

// Decode turns containerd's options into Options. nil or an empty Any is
// no options. Errors wrap errdefs: InvalidArgument for an unknown type, an
// unknown key or a bad value, NotFound for a missing ConfigPath.
func Decode(a typeurl.Any) (*Options, error) {
	if a == nil || (a.GetTypeUrl() == "" && len(a.GetValue()) == 0) {
		return &Options{}, nil
	}
	if isLegacyCreateOptions(a.GetTypeUrl()) {
		return fromLegacy(a.GetValue())
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return nil, fmt.Errorf("runtime options of type %q: %v: %w", a.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	switch o := v.(type) {
	case *runcopts.Options:
		return fromRunc(o)
	case *runtimeoptions.Options:
		return fromRuntimeOptions(o)
	}
	return nil, fmt.Errorf("runtime options of type %q: want %s or %s: %w", a.GetTypeUrl(),
		typeName(&runcopts.Options{}), typeName(&runtimeoptions.Options{}), errdefs.ErrInvalidArgument)
}

func typeName(m any) string {
	u, err := typeurl.TypeURL(m)
	if err != nil {
		return fmt.Sprintf("%T", m)
	}
	return u
}

// fromRunc decides each of runc's options the way containerd's runc shim
// uses it.
func fromRunc(r *runcopts.Options) (*Options, error) {
	o := &Options{IOUID: r.GetIoUid(), IOGID: r.GetIoGid(), SystemdCgroup: r.GetSystemdCgroup()}
	if err := o.setShimCgroup(r.GetShimCgroup()); err != nil {
		return nil, err
	}
	// NoNewKeyring needs nothing: the setup face never joins a new session
	// keyring, which is what NoNewKeyring=true asks of runc.
	ignore := func(set bool, option, reason string) {
		if set {
			o.Ignored = append(o.Ignored, Ignored{Option: option, Reason: reason})
		}
	}
	ignore(r.GetNoPivotRoot(), "NoPivotRoot", "the root is always changed with pivot_root (the setup face needs it to detach the host's tree)")
	ignore(r.GetBinaryName() != "", "BinaryName", fmt.Sprintf("no runc binary is run (%q): the shim is its own runtime", r.GetBinaryName()))
	ignore(r.GetRoot() != "", "Root", fmt.Sprintf("there is no runc state directory (%q): the daemon keeps the state", r.GetRoot()))
	ignore(r.GetCriuImagePath() != "", "CriuImagePath", "checkpoint/restore is not implemented")
	ignore(r.GetCriuWorkPath() != "", "CriuWorkPath", "checkpoint/restore is not implemented")
	ignore(r.GetTaskApiAddress() != "", "TaskApiAddress", "the task API is served on the shim's own socket only")
	ignore(r.GetTaskApiVersion() != 0, "TaskApiVersion", "the task API is served at version 2 only")
	return o, nil
}

// setShimCgroup checks p with the rule of linux.cgroupsPath (a clean
// cgroupfs path, no systemd form), absolute: a relative one would depend on
// where containerd happens to run.
func (o *Options) setShimCgroup(p string) error {
	if p == "" {
		return nil
	}
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("runtime option ShimCgroup %q: not an absolute cgroup path: %w", p, errdefs.ErrInvalidArgument)
	}
	if _, err := spec.ValidateCgroupsPath(p); err != nil {
		return fmt.Errorf("runtime option ShimCgroup: %w", err)
	}
	o.ShimCgroup = p
	return nil
}

func fromRuntimeOptions(r *runtimeoptions.Options) (*Options, error) {
	if err := checkTypeURL(r.GetTypeUrl()); err != nil {
		return nil, err
	}
	body, path := r.GetConfigBody(), r.GetConfigPath()
	switch {
	case path != "" && len(body) > 0:
		return nil, fmt.Errorf("runtime options: both ConfigPath %q and ConfigBody: %w", path, errdefs.ErrInvalidArgument)
	case path != "":
		b, err := readConfig(path)
		if err != nil {
			return nil, err
		}
		o, err := Parse(b)
		if err != nil {
			return nil, fmt.Errorf("runtime options ConfigPath %s: %w", path, err)
		}
		return o, nil
	}
	o, err := Parse(body)
	if err != nil {
		return nil, fmt.Errorf("runtime options ConfigBody: %w", err)
	}
	return o, nil
}

func checkTypeURL(u string) error {
	if u != "" && u != TypeURL {
		return fmt.Errorf("runtime options TypeUrl %q: this runtime reads %q: %w", u, TypeURL, errdefs.ErrInvalidArgument)
	}
	return nil
}

// readConfig reads ConfigPath: an absolute path to a regular file of at most
// maxConfigFile bytes. The daemon reads it as root: it is the operator's
// file, named in containerd's configuration or by a client of containerd.
func readConfig(path string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("runtime options ConfigPath %q: not an absolute path: %w", path, errdefs.ErrInvalidArgument)
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("runtime options ConfigPath: %w: %w", err, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("runtime options ConfigPath: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("runtime options ConfigPath: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("runtime options ConfigPath %s: not a regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, fmt.Errorf("runtime options ConfigPath: %w", err)
	}
	if len(b) > maxConfigFile {
		return nil, fmt.Errorf("runtime options ConfigPath %s: larger than %d bytes: %w", path, maxConfigFile, errdefs.ErrInvalidArgument)
	}
	return b, nil
}

// Parse reads this runtime's options document (File) strictly: one TOML
// document, known keys of the right type only. Empty is no options.
func Parse(b []byte) (*Options, error) {
	var f File
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			var keys []string
			for _, e := range strict.Errors {
				keys = append(keys, strings.Join(e.Key(), "."))
			}
			return nil, fmt.Errorf("unknown key %s (known: TypeUrl, ConfigPath, ShimCgroup, IoUid, IoGid, SystemdCgroup): %w",
				strings.Join(keys, ", "), errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("TOML: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := checkTypeURL(f.TypeUrl); err != nil {
		return nil, err
	}
	if f.ConfigPath != "" {
		return nil, fmt.Errorf("ConfigPath %q inside an options document: %w", f.ConfigPath, errdefs.ErrInvalidArgument)
	}
	o := &Options{IOUID: f.IoUid, IOGID: f.IoGid, SystemdCgroup: f.SystemdCgroup}
	if err := o.setShimCgroup(f.ShimCgroup); err != nil {
		return nil, err
	}
	return o, nil
}
