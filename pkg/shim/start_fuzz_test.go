package shim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	bootstrap "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// FuzzStartStdin drives what the start face does with its stdin: parse it
// as BootstrapParams, derive the socket address from it, and print the
// answer. Properties: params come back only for the flags' id and
// namespace; they survive a re-encoding; the address is always the socket
// directory plus a 64-digit hash (stdin cannot steer it elsewhere); the
// answer is what the containerd of that stdin reads, and names the address.
func FuzzStartStdin(f *testing.F) {
	add := func(m proto.Message, maxVer string) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "c1", "default", maxVer)
	}
	add(&bootstrap.BootstrapParams{InstanceID: "c1", Namespace: "default", ContainerdTtrpcAddress: "/x.ttrpc",
		ContainerdGrpcAddress: "/run/containerd/containerd.sock", SocketDir: proto.String("/run/containerd/s2"),
		LogLevel: bootstrap.LogLevel_LOG_LEVEL_DEBUG}, "")
	add(&bootstrap.BootstrapParams{InstanceID: "c1", Namespace: "default", SocketDir: proto.String("../../../tmp")}, "2")
	add(&bootstrap.BootstrapParams{InstanceID: "c2", Namespace: "default"}, "2")
	opts, err := anypb.New(&runtimeoptions.Options{ConfigPath: "/etc/x.toml"})
	if err != nil {
		f.Fatal(err)
	}
	add(opts, "2")
	add(opts, "")
	f.Add([]byte("\x0a\x19runtimeoptions.v1.Options\x12\x11\x12\x0f/tmp/rtcfg.toml"), "runtimeoptions.v1.Options", "", "")
	f.Add([]byte{}, "c1", "default", "1")
	f.Add([]byte("\xff\xff\xff"), "c1", "default", " 3 ")

	f.Fuzz(func(t *testing.T, stdin []byte, id, namespace, maxVer string) {
		p := parseBootstrapParams(stdin, id, namespace)
		if len(stdin) == 0 && p != nil {
			t.Fatal("params from an empty stdin")
		}
		socketDir, grpc := defaultSocketDir, "/run/containerd/containerd.sock"
		if p != nil {
			if p.GetInstanceID() != id || p.GetNamespace() != namespace {
				t.Fatalf("params for %q/%q accepted for %q/%q", p.GetNamespace(), p.GetInstanceID(), namespace, id)
			}
			b, err := proto.Marshal(p)
			if err != nil {
				t.Fatalf("re-encode params: %v", err)
			}
			if p2 := parseBootstrapParams(b, id, namespace); p2 == nil || !proto.Equal(p, p2) {
				t.Fatalf("params changed on re-encoding: %v / %v", p, p2)
			}
			if d := p.GetSocketDir(); d != "" {
				socketDir = d
			}
			if a := p.GetContainerdGrpcAddress(); a != "" {
				grpc = a
			}
		}
		address := socketAddress(socketDir, grpc, namespace, id)
		path := socketPath(address)
		if hash := filepath.Base(path); filepath.Dir(path) != filepath.Clean(socketDir) ||
			len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
			t.Fatalf("address %q is not %s/<sha256>", address, socketDir)
		}

		out := startAnswer(p, maxVer, address)
		v, verr := strconv.Atoi(strings.TrimSpace(maxVer))
		switch {
		case p != nil:
			var r bootstrap.BootstrapResult
			if err := proto.Unmarshal(out, &r); err != nil || r.Address != address || r.Version != 2 || r.Protocol != "ttrpc" {
				t.Fatalf("2.3+ answer %q: %v %v", out, &r, err)
			}
		case verr == nil && v >= 2:
			var r struct {
				Version  int    `json:"version"`
				Address  string `json:"address"`
				Protocol string `json:"protocol"`
			}
			if err := json.Unmarshal(out, &r); err != nil || r.Address != address || r.Version != 2 || r.Protocol != "ttrpc" {
				t.Fatalf("1.7-2.2 answer %q: %+v %v", out, r, err)
			}
		default:
			if string(out) != address {
				t.Fatalf("1.6 answer %q, want %q", out, address)
			}
		}
	})
}

// FuzzGroupID reads the bundle's config.json as the start face does, before
// anything validated it: the group is the id or a non-empty annotation, and
// only unparsable JSON is an error.
func FuzzGroupID(f *testing.F) {
	for _, c := range []string{
		`{"annotations":{"io.containerd.runc.v2.group":"g","io.kubernetes.cri.sandbox-id":"s"}}`,
		`{"annotations":{"io.kubernetes.cri.sandbox-id":"s"}}`,
		`{"annotations":{"io.containerd.runc.v2.group":""}}`,
		`{"annotations":null}`, `{"annotations":[]}`, `[]`, `null`, `{nope`,
	} {
		f.Add([]byte(c), "c1")
	}
	for _, name := range []string{"ctr-run-containerd-1.6.json", "ctr-run-containerd-2.4.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "internal", "spec", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "c1")
	}
	bundle := f.TempDir()
	f.Fuzz(func(t *testing.T, config []byte, id string) {
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), config, 0o600); err != nil {
			t.Fatal(err)
		}
		g, err := groupID(bundle, id)
		var s struct {
			Annotations map[string]string `json:"annotations"`
		}
		jerr := json.Unmarshal(config, &s)
		if (err != nil) != (jerr != nil) {
			t.Fatalf("groupID error %v, JSON error %v", err, jerr)
		}
		if err != nil {
			return
		}
		if g != id && (g == "" || (g != s.Annotations[groupAnnotations[0]] && g != s.Annotations[groupAnnotations[1]])) {
			t.Fatalf("group %q is neither the id %q nor a group annotation", g, id)
		}
	})
}
