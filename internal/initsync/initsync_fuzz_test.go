package initsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// seedPackets are what each side really sends, plus near misses.
var seedPackets = []string{
	`{"kind":"plan","plan":{"Root":"/r","Process":{"Args":["sh"]}}}`,
	`{"kind":"joined"}`,
	`{"kind":"ready"}`,
	`{"kind":"start"}`,
	`{"kind":"fail","error":"mount /evil: invalid argument","code":"invalid-argument"}`,
	`{"kind":"fail","error":"x","code":"martian"}`,
	`{"kind":"fail"}`,
	`{"kind":"plan","plan":null}`,
	`{"kind":"plan","plan":[1]}`,
	`{"kind":"ready","plan":{}}`,
	`{"kind":"ready"} `,
	`{"kind":"ready"}{}`,
	`{"kind":"READY"}`,
	`{"Kind":"ready"}`,
	`{"kind":"ready","kind":"plan"}`,
	"",
	"null",
	"\x00",
}

// classified says whether err carries an errdefs class this package uses.
func classified(err error) bool {
	var ce *ChildError
	return errors.As(err, &ce) || errdefs.IsInternal(err) || errdefs.IsFailedPrecondition(err) ||
		errdefs.IsInvalidArgument(err)
}

// FuzzDecode: a packet decodes to a message or an error, never both; errors
// are classified; an accepted message re-encodes to one that decodes the
// same (the daemon and the setup face agree on what was said).
func FuzzDecode(f *testing.F) {
	for _, p := range seedPackets {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			if !reflect.DeepEqual(m, message{}) {
				t.Fatalf("decode returned both %+v and %v", m, err)
			}
			if !classified(err) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		switch m.Kind {
		case kindPlan, kindReady, kindStart, kindJoined:
		default:
			t.Fatalf("accepted kind %q", m.Kind)
		}
		if m.Kind == kindPlan {
			if v, ok := jsonValue(t, m.Plan).(map[string]any); !ok || v == nil {
				t.Fatalf("accepted a plan that is not an object: %q", m.Plan)
			}
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := decode(again)
		if err != nil {
			t.Fatalf("re-encoded %q: %v", again, err)
		}
		// Marshal compacts the plan and escapes HTML in it: compare values.
		if !reflect.DeepEqual(jsonValue(t, m.Plan), jsonValue(t, m2.Plan)) {
			t.Fatalf("round trip changed plan %q into %q", m.Plan, m2.Plan)
		}
		m.Plan, m2.Plan = nil, nil
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed %+v into %+v", m, m2)
		}
	})
}

func jsonValue(t *testing.T, b json.RawMessage) any {
	if b == nil {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return v
}

// FuzzRecv sends a raw packet on a real socketpair and runs one receive step
// of either side on it: each returns nil or a classified error, and never
// blocks once the peer has hung up.
func FuzzRecv(f *testing.F) {
	for _, p := range seedPackets {
		for step := range uint8(5) {
			f.Add([]byte(p), step)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, step uint8) {
		a, z, err := NewPair()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		defer z.Close()
		rc, err := a.c.f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		if err := rc.Control(func(fd uintptr) { _, werr = unix.Write(int(fd), b) }); err != nil {
			t.Fatal(err)
		}
		if werr != nil {
			t.Skipf("packet of %d bytes: %v", len(b), werr)
		}
		a.Close()
		var plan map[string]any
		switch step % 5 {
		case 0: // the setup face
			err = z.RecvPlan(&plan)
			if err == nil && plan == nil {
				t.Fatalf("RecvPlan accepted %q as a plan", b)
			}
		case 1:
			err = z.RecvJoined()
		case 2:
			err = z.RecvStart()
		case 3: // the daemon, reading the same end
			err = (&Parent{z.c}).RecvReady()
		case 4:
			err = (&Parent{z.c}).RecvExec()
			if err == nil && len(b) > 0 {
				t.Fatalf("RecvExec took packet %q for a successful exec", b)
			}
		}
		if err != nil && !classified(err) {
			t.Fatalf("step %d: unclassified error %v", step%5, err)
		}
	})
}
