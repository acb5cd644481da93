package rtopts

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"
	runcopts "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

func mustAny(t *testing.T, v any) typeurl.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(v)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDecodeRunc(t *testing.T) {
	o, err := Decode(mustAny(t, &runcopts.Options{
		ShimCgroup: "/shims", IoUid: 1000, IoGid: 1001,
		NoPivotRoot: true, NoNewKeyring: true, BinaryName: "crun", Root: "/run/x",
		CriuImagePath: "/i", CriuWorkPath: "/w",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if o.ShimCgroup != "/shims" || o.IOUID != 1000 || o.IOGID != 1001 {
		t.Errorf("got %+v", o)
	}
	var ignored []string
	for _, i := range o.Ignored {
		if i.Reason == "" {
			t.Errorf("%s: no reason", i.Option)
		}
		ignored = append(ignored, i.Option)
	}
	// NoNewKeyring=true is what the runtime always does: nothing to warn of.
	want := []string{"NoPivotRoot", "BinaryName", "Root", "CriuImagePath", "CriuWorkPath"}
	if !reflect.DeepEqual(ignored, want) {
		t.Errorf("ignored %v, want %v", ignored, want)
	}
	// Defaults: nothing set, nothing ignored.
	o, err = Decode(mustAny(t, &runcopts.Options{}))
	if err != nil || !reflect.DeepEqual(o, &Options{}) {
		t.Errorf("empty runc options: %+v, %v", o, err)
	}
}

func TestDecodeNone(t *testing.T) {
	for _, a := range []typeurl.Any{nil, &anypb.Any{}} {
		o, err := Decode(a)
		if err != nil || !reflect.DeepEqual(o, &Options{}) {
			t.Errorf("Decode(%v) = %+v, %v", a, o, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		a    typeurl.Any
		want error
	}{
		"unknown type":          {mustAny(t, &types.Mount{Type: "bind"}), errdefs.ErrInvalidArgument},
		"unregistered type":     {&anypb.Any{TypeUrl: "example.com/nope", Value: []byte{1}}, errdefs.ErrInvalidArgument},
		"relative shim cgroup":  {mustAny(t, &runcopts.Options{ShimCgroup: "shims"}), errdefs.ErrInvalidArgument},
		"climbing shim cgroup":  {mustAny(t, &runcopts.Options{ShimCgroup: "/a/../../etc"}), errdefs.ErrInvalidArgument},
		"systemd form":          {mustAny(t, &runcopts.Options{ShimCgroup: "system.slice:x:y"}), errdefs.ErrInvalidArgument},
		"foreign TypeUrl":       {mustAny(t, &runtimeoptions.Options{TypeUrl: "io.containerd.runc.v1.Options"}), errdefs.ErrInvalidArgument},
		"path and body":         {mustAny(t, &runtimeoptions.Options{ConfigPath: "/x", ConfigBody: []byte("IoUid = 1")}), errdefs.ErrInvalidArgument},
		"relative path":         {mustAny(t, &runtimeoptions.Options{ConfigPath: "x.toml"}), errdefs.ErrInvalidArgument},
		"missing path":          {mustAny(t, &runtimeoptions.Options{ConfigPath: filepath.Join(dir, "none.toml")}), errdefs.ErrNotFound},
		"directory path":        {mustAny(t, &runtimeoptions.Options{ConfigPath: dir}), errdefs.ErrInvalidArgument},
		"unknown key":           {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("Bogus = 1")}), errdefs.ErrInvalidArgument},
		"runc key in ours":      {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("NoPivotRoot = true")}), errdefs.ErrInvalidArgument},
		"wrong type":            {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte(`IoUid = "x"`)}), errdefs.ErrInvalidArgument},
		"negative uid":          {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte(`IoUid = -1`)}), errdefs.ErrInvalidArgument},
		"not TOML":              {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("{")}), errdefs.ErrInvalidArgument},
		"nested ConfigPath":     {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte(`ConfigPath = "/x"`)}), errdefs.ErrInvalidArgument},
		"foreign TypeUrl in it": {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte(`TypeUrl = "x"`)}), errdefs.ErrInvalidArgument},
		"bad shim cgroup in it": {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte(`ShimCgroup = "/a//b"`)}), errdefs.ErrInvalidArgument},
	} {
		t.Run(name, func(t *testing.T) {
			o, err := Decode(tc.a)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode = %+v, %v; want %v", o, err, tc.want)
			}
		})
	}
}

func TestDecodeUnknownKeyNamed(t *testing.T) {
	_, err := Decode(mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("IoUid = 1\nBogus = 2\n[extra]\nx = 1\n")}))
	if err == nil || !strings.Contains(err.Error(), "Bogus") || !strings.Contains(err.Error(), "extra") {
		t.Fatalf("error should name the unknown keys: %v", err)
	}
}

// TestDecodeFile reads ConfigPath and ConfigBody, including the body
// containerd's CRI builds from runtimes.X.options (its own keys in it).
func TestDecodeFile(t *testing.T) {
	doc := "ShimCgroup = \"/shims/a\"\nIoUid = 1000\nIoGid = 1000\nSystemdCgroup = false\n"
	want := &Options{ShimCgroup: "/shims/a", IOUID: 1000, IOGID: 1000}
	p := filepath.Join(t.TempDir(), "autokill.toml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]typeurl.Any{
		"path":             mustAny(t, &runtimeoptions.Options{ConfigPath: p}),
		"path, our type":   mustAny(t, &runtimeoptions.Options{ConfigPath: p, TypeUrl: TypeURL}),
		"body":             mustAny(t, &runtimeoptions.Options{ConfigBody: []byte(doc)}),
		"CRI body":         mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("ConfigPath = ''\nTypeUrl = '" + TypeURL + "'\n" + doc)}),
		"keys in any case": mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("shimcgroup = '/shims/a'\nioUid = 1000\nIoGid = 1000\n")}),
	} {
		o, err := Decode(a)
		if err != nil || !reflect.DeepEqual(o, want) {
			t.Errorf("%s: %+v, %v; want %+v", name, o, err, want)
		}
	}
	o, err := Decode(mustAny(t, &runtimeoptions.Options{}))
	if err != nil || !reflect.DeepEqual(o, &Options{}) {
		t.Errorf("empty runtimeoptions: %+v, %v", o, err)
	}
}

// containerd 1.x's client sends the linux v1 runtime's CreateOptions to a
// runtime not named io.containerd.runc.* (ctr 1.6 run --uidmap: IoUid/IoGid).
func TestDecodeLegacyCreateOptions(t *testing.T) {
	// What ctr 1.6.20 sends for --uidmap 0:100000:65536 (fields 10, 11),
	// with ShimCgroup (9), NoPivotRoot (1), NoNewKeyring (8), FileLocks (5)
	// and an unknown field 99.
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 5, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 8, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 9, protowire.BytesType)
	b = protowire.AppendString(b, "/shims")
	b = protowire.AppendTag(b, 10, protowire.VarintType)
	b = protowire.AppendVarint(b, 100000)
	b = protowire.AppendTag(b, 11, protowire.VarintType)
	b = protowire.AppendVarint(b, 100000)
	b = protowire.AppendTag(b, 99, protowire.BytesType)
	b = protowire.AppendString(b, "x")
	for _, url := range []string{"containerd.linux.runc.CreateOptions", "type.googleapis.com/containerd.linux.runc.CreateOptions"} {
		o, err := Decode(&anypb.Any{TypeUrl: url, Value: b})
		if err != nil {
			t.Fatal(err)
		}
		want := &Options{ShimCgroup: "/shims", IOUID: 100000, IOGID: 100000, Ignored: []Ignored{
			{"NoPivotRoot", o.Ignored[0].Reason}, {"FileLocks", "checkpoint/restore is not implemented"},
		}}
		if !reflect.DeepEqual(o, want) {
			t.Errorf("%s: %+v, want %+v", url, o, want)
		}
	}
	if _, err := Decode(&anypb.Any{TypeUrl: legacyCreateOptions, Value: []byte{0x0a}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("truncated CreateOptions: %v", err)
	}
	var sd []byte
	sd = protowire.AppendTag(sd, 9, protowire.BytesType)
	sd = protowire.AppendString(sd, "rel")
	if _, err := Decode(&anypb.Any{TypeUrl: legacyCreateOptions, Value: sd}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("relative ShimCgroup: %v", err)
	}
}

// SystemdCgroup selects the systemd driver, in runc's Options and ours.
func TestDecodeSystemdCgroup(t *testing.T) {
	for name, a := range map[string]typeurl.Any{
		"runc": mustAny(t, &runcopts.Options{SystemdCgroup: true}),
		"ours": mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("SystemdCgroup = true")}),
	} {
		if o, err := Decode(a); err != nil || !reflect.DeepEqual(o, &Options{SystemdCgroup: true}) {
			t.Errorf("%s: %+v, %v; want SystemdCgroup", name, o, err)
		}
	}
}
