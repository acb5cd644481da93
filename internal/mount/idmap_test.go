package mount

import (
	"errors"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestIDMapOptions(t *testing.T) {
	rest, uids, gids, err := idmapOptions([]string{"index=off", "uidmap=0:100000:65536,65536:1000:1", "gidmap=0:200000:10", "lowerdir=/a:/b"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rest, []string{"index=off", "lowerdir=/a:/b"}) {
		t.Errorf("rest %v", rest)
	}
	wantU := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}, {ContainerID: 65536, HostID: 1000, Size: 1}}
	if !reflect.DeepEqual(uids, wantU) || !reflect.DeepEqual(gids, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 10}}) {
		t.Errorf("uids %v gids %v", uids, gids)
	}
	if _, u, _, err := idmapOptions([]string{"ro"}); err != nil || u != nil {
		t.Errorf("no maps: %v %v", u, err)
	}
	for _, bad := range [][]string{
		{"uidmap=0:1:1"},                  // without gidmap
		{"uidmap=0:1", "gidmap=0:1:1"},    // two fields
		{"uidmap=0:1:0", "gidmap=0:1:1"},  // size 0
		{"uidmap=a:1:1", "gidmap=0:1:1"},  // not a number
		{"uidmap=0:1:1", "gidmap=0:-1:1"}, // negative
	} {
		if _, _, _, err := idmapOptions(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%v: error %v, want InvalidArgument", bad, err)
		}
	}
}
