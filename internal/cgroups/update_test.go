package cgroups

import (
	"encoding/json"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCheckUpdate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		json    string
		unified bool
		ok      bool
		want    string // JSON of what is applied, when ok
	}{
		{"memory", `{"memory":{"limit":67108864,"swap":134217728}}`, false, true, `{"memory":{"limit":67108864,"swap":134217728}}`},
		{"zero is unchanged", `{"memory":{"limit":0,"reservation":0},"cpu":{"shares":0,"quota":0,"period":0},"blockIO":{"weight":0}}`, false, true, `{}`},
		{"no limit", `{"memory":{"limit":-1},"pids":{"limit":-1},"cpu":{"quota":-1}}`, true, true, `{"memory":{"limit":-1},"cpu":{"quota":-1},"pids":{"limit":-1}}`},
		{"devices are not applied", `{"devices":[{"allow":false,"access":"rwm"}],"pids":{"limit":10}}`, false, true, `{"pids":{"limit":10}}`},
		{"cpu", `{"cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0-1,3","mems":"0"}}`, false, true, `{"cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0-1,3","mems":"0"}}`},
		{"blkio", `{"blockIO":{"weight":500,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}]}}`, false, true, `{"blockIO":{"weight":500,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}]}}`},
		{"unified v2", `{"unified":{"memory.high":"1000000"}}`, true, true, `{"unified":{"memory.high":"1000000"}}`},
		{"none", `null`, false, false, ""},
		{"negative limit", `{"memory":{"limit":-2}}`, false, false, ""},
		{"swap below limit", `{"memory":{"limit":67108864,"swap":1048576}}`, false, false, ""},
		{"v2 swap alone", `{"memory":{"swap":1048576}}`, true, false, ""},
		{"kernel memory", `{"memory":{"kernel":1048576}}`, false, false, ""},
		{"shares too big", `{"cpu":{"shares":262145}}`, false, false, ""},
		{"period too small", `{"cpu":{"period":999}}`, false, false, ""},
		{"quota too small", `{"cpu":{"quota":999}}`, false, false, ""},
		{"cpus syntax", `{"cpu":{"cpus":"0-"}}`, false, false, ""},
		{"reversed range", `{"cpu":{"cpus":"3-1"}}`, false, false, ""},
		{"pids", `{"pids":{"limit":-5}}`, false, false, ""},
		{"weight", `{"blockIO":{"weight":5}}`, false, false, ""},
		{"leaf weight v2", `{"blockIO":{"leafWeight":100}}`, true, false, ""},
		{"unified on v1", `{"unified":{"memory.high":"1"}}`, false, false, ""},
		{"unified core file", `{"unified":{"cgroup.procs":"1"}}`, true, false, ""},
		{"unified path", `{"unified":{"memory.high/../x":"1"}}`, true, false, ""},
		{"unified two lines", `{"unified":{"memory.high":"1\n2"}}`, true, false, ""},
		{"hugepage size path", `{"hugepageLimits":[{"pageSize":"../2MB","limit":1}]}`, false, false, ""},
		{"rdma", `{"rdma":{"mlx":{"hcaHandles":1}}}`, false, false, ""},
		{"swappiness v2", `{"memory":{"swappiness":10}}`, true, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in *specs.LinuxResources
			if err := json.Unmarshal([]byte(tc.json), &in); err != nil {
				t.Fatal(err)
			}
			out, err := CheckUpdate(in, tc.unified)
			if !tc.ok {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("got %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(out)
			if string(b) != tc.want {
				t.Fatalf("applies %s, want %s", b, tc.want)
			}
		})
	}
}
