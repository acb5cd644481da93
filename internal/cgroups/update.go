package cgroups

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Kernel bounds of the knobs Update writes (kernel/sched/core.c,
// block/blk-cgroup.c): values outside them fail half-way through an update
// on one hierarchy and not the other, so they are refused up front.
const (
	minShares, maxShares = 2, 262144
	minPeriod, maxPeriod = 1000, 1000000 // µs
	minQuota             = 1000          // µs
	minWeight, maxWeight = 10, 1000      // blkio
)

func badUpdate(field, format string, args ...any) error {
	return fmt.Errorf("update: linux.resources.%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// CheckUpdate checks the resources of an Update request and returns what
// to apply. Zero means "unchanged" for limits and weights, as runc's update
// takes it. Device rules are not applied: they are fixed at create, as with
// runc (whose update has none), and containerd's CRI resends the spec's
// list, which lacks the defaults the runtime appended. Fields this runtime
// cannot apply are refused, never dropped.
func CheckUpdate(in *specs.LinuxResources, unified bool) (*specs.LinuxResources, error) {
	if in == nil {
		return nil, fmt.Errorf("update: no resources: %w", errdefs.ErrInvalidArgument)
	}
	out := &specs.LinuxResources{}
	var err error
	if out.Memory, err = checkMemory(in.Memory, unified); err != nil {
		return nil, err
	}
	if out.CPU, err = checkCPU(in.CPU); err != nil {
		return nil, err
	}
	if p := in.Pids; p != nil && p.Limit != nil && *p.Limit != 0 {
		if *p.Limit < -1 {
			return nil, badUpdate("pids.limit", "%d: want -1 (no limit) or a positive count", *p.Limit)
		}
		out.Pids = &specs.LinuxPids{Limit: p.Limit}
	}
	if out.BlockIO, err = checkBlockIO(in.BlockIO, unified); err != nil {
		return nil, err
	}
	for i, h := range in.HugepageLimits {
		if h.Pagesize == "" || strings.ContainsAny(h.Pagesize, "/\x00") || strings.HasPrefix(h.Pagesize, ".") {
			return nil, badUpdate(fmt.Sprintf("hugepageLimits[%d].pageSize", i), "%q is not a page size such as 2MB", h.Pagesize)
		}
		out.HugepageLimits = append(out.HugepageLimits, h)
	}
	if n := in.Network; n != nil && (n.ClassID != nil || len(n.Priorities) > 0) {
		return nil, badUpdate("network", "not supported")
	}
	if len(in.Rdma) > 0 {
		return nil, badUpdate("rdma", "not supported")
	}
	if len(in.Unified) > 0 {
		if !unified {
			return nil, badUpdate("unified", "needs cgroup v2; this host runs cgroup v1")
		}
		out.Unified = map[string]string{}
		for k, v := range in.Unified {
			// A controller's knob: not a cgroup.* core file (procs, kill,
			// freeze, subtree_control would move or kill processes or
			// change the tree), and one file name.
			ctl, knob, ok := strings.Cut(k, ".")
			if !ok || ctl == "" || knob == "" || ctl == "cgroup" || strings.ContainsAny(k, "/\x00") {
				return nil, badUpdate("unified", "%q is not a controller interface file", k)
			}
			if strings.ContainsAny(v, "\n\x00") {
				return nil, badUpdate("unified["+k+"]", "%q: one line only", v)
			}
			out.Unified[k] = v
		}
	}
	return out, nil
}

func checkMemory(m *specs.LinuxMemory, unified bool) (*specs.LinuxMemory, error) {
	if m == nil {
		return nil, nil
	}
	switch {
	case m.Kernel != nil && *m.Kernel != 0:
		return nil, badUpdate("memory.kernel", "kernel memory limits are not supported (removed from Linux)")
	case m.KernelTCP != nil && *m.KernelTCP != 0:
		return nil, badUpdate("memory.kernelTCP", "not supported")
	case m.CheckBeforeUpdate != nil && *m.CheckBeforeUpdate:
		return nil, badUpdate("memory.checkBeforeUpdate", "not supported")
	case m.UseHierarchy != nil:
		return nil, badUpdate("memory.useHierarchy", "not supported")
	case unified && m.Swappiness != nil:
		return nil, badUpdate("memory.swappiness", "cgroup v2 has no per-cgroup swappiness")
	case unified && m.DisableOOMKiller != nil && *m.DisableOOMKiller:
		return nil, badUpdate("memory.disableOOMKiller", "cgroup v2 cannot disable the OOM killer")
	case m.Swappiness != nil && *m.Swappiness > 100:
		return nil, badUpdate("memory.swappiness", "%d: want 0 to 100", *m.Swappiness)
	}
	out := &specs.LinuxMemory{Swappiness: m.Swappiness}
	if !unified {
		out.DisableOOMKiller = m.DisableOOMKiller
	}
	for _, f := range []struct {
		name string
		in   *int64
		out  **int64
	}{{"limit", m.Limit, &out.Limit}, {"reservation", m.Reservation, &out.Reservation}, {"swap", m.Swap, &out.Swap}} {
		if f.in == nil || *f.in == 0 {
			continue
		}
		if *f.in < -1 {
			return nil, badUpdate("memory."+f.name, "%d: want -1 (no limit) or a positive number of bytes", *f.in)
		}
		*f.out = f.in
	}
	if out.Limit != nil && out.Swap != nil && *out.Swap != -1 && (*out.Limit == -1 || *out.Swap < *out.Limit) {
		return nil, badUpdate("memory.swap", "%d is memory+swap and must not be below memory.limit %d", *out.Swap, *out.Limit)
	}
	if unified && out.Swap != nil && out.Limit == nil && *out.Swap != -1 {
		// v2 limits swap alone (memory.swap.max = swap - limit): without
		// the limit of the same request the split is unknown.
		return nil, badUpdate("memory.swap", "on cgroup v2 give memory.limit with it")
	}
	if *out == (specs.LinuxMemory{}) {
		return nil, nil
	}
	return out, nil
}

func checkCPU(c *specs.LinuxCPU) (*specs.LinuxCPU, error) {
	if c == nil {
		return nil, nil
	}
	switch {
	case c.Burst != nil:
		return nil, badUpdate("cpu.burst", "not supported")
	case c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0, c.RealtimePeriod != nil && *c.RealtimePeriod != 0:
		return nil, badUpdate("cpu.realtimeRuntime/realtimePeriod", "not supported")
	case c.Idle != nil:
		return nil, badUpdate("cpu.idle", "not supported")
	}
	out := &specs.LinuxCPU{}
	if s := c.Shares; s != nil && *s != 0 {
		if *s < minShares || *s > maxShares {
			return nil, badUpdate("cpu.shares", "%d: want %d to %d", *s, minShares, maxShares)
		}
		out.Shares = s
	}
	if p := c.Period; p != nil && *p != 0 {
		if *p < minPeriod || *p > maxPeriod {
			return nil, badUpdate("cpu.period", "%d µs: want %d to %d", *p, minPeriod, maxPeriod)
		}
		out.Period = p
	}
	if q := c.Quota; q != nil && *q != 0 {
		if *q != -1 && *q < minQuota {
			return nil, badUpdate("cpu.quota", "%d µs: want -1 (no limit) or at least %d", *q, minQuota)
		}
		out.Quota = q
	}
	for _, f := range []struct{ name, v string }{{"cpus", c.Cpus}, {"mems", c.Mems}} {
		if f.v == "" {
			continue
		}
		if err := checkCPUList(f.v); err != nil {
			return nil, badUpdate("cpu."+f.name, "%q: %v", f.v, err)
		}
	}
	out.Cpus, out.Mems = c.Cpus, c.Mems
	if *out == (specs.LinuxCPU{}) {
		return nil, nil
	}
	return out, nil
}

// checkCPUList checks the kernel's list syntax: "0-3,5,7-8".
func checkCPUList(s string) error {
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return fmt.Errorf("%q is not a number or range", part)
		}
		if isRange {
			b, err := strconv.ParseUint(hi, 10, 16)
			if err != nil || b < a {
				return fmt.Errorf("%q is not a range", part)
			}
		}
	}
	return nil
}

func checkBlockIO(b *specs.LinuxBlockIO, unified bool) (*specs.LinuxBlockIO, error) {
	if b == nil {
		return nil, nil
	}
	weight := func(field string, w *uint16) error {
		if w != nil && *w != 0 && (*w < minWeight || *w > maxWeight) {
			return badUpdate(field, "%d: want %d to %d", *w, minWeight, maxWeight)
		}
		return nil
	}
	if err := weight("blockIO.weight", b.Weight); err != nil {
		return nil, err
	}
	if b.LeafWeight != nil && *b.LeafWeight != 0 {
		if unified {
			return nil, badUpdate("blockIO.leafWeight", "cgroup v2 has no leaf weight")
		}
		if err := weight("blockIO.leafWeight", b.LeafWeight); err != nil {
			return nil, err
		}
	}
	for i, d := range b.WeightDevice {
		if unified {
			return nil, badUpdate("blockIO.weightDevice", "not supported on cgroup v2")
		}
		if err := weight(fmt.Sprintf("blockIO.weightDevice[%d].weight", i), d.Weight); err != nil {
			return nil, err
		}
		if err := weight(fmt.Sprintf("blockIO.weightDevice[%d].leafWeight", i), d.LeafWeight); err != nil {
			return nil, err
		}
	}
	for name, l := range map[string][]specs.LinuxThrottleDevice{
		"throttleReadBpsDevice": b.ThrottleReadBpsDevice, "throttleWriteBpsDevice": b.ThrottleWriteBpsDevice,
		"throttleReadIOPSDevice": b.ThrottleReadIOPSDevice, "throttleWriteIOPSDevice": b.ThrottleWriteIOPSDevice,
	} {
		for i, d := range l {
			if d.Major < 0 || d.Minor < 0 {
				return nil, badUpdate(fmt.Sprintf("blockIO.%s[%d]", name, i), "device %d:%d", d.Major, d.Minor)
			}
		}
	}
	out := *b
	// Zero weights mean "unchanged"; written, they would be refused.
	zero := func(w **uint16) {
		if *w != nil && **w == 0 {
			*w = nil
		}
	}
	zero(&out.Weight)
	zero(&out.LeafWeight)
	out.WeightDevice = nil
	for _, d := range b.WeightDevice {
		zero(&d.Weight)
		zero(&d.LeafWeight)
		if d.Weight != nil || d.LeafWeight != nil {
			out.WeightDevice = append(out.WeightDevice, d)
		}
	}
	if out.Weight == nil && out.LeafWeight == nil && len(out.WeightDevice) == 0 && len(out.ThrottleReadBpsDevice) == 0 &&
		len(out.ThrottleWriteBpsDevice) == 0 && len(out.ThrottleReadIOPSDevice) == 0 && len(out.ThrottleWriteIOPSDevice) == 0 {
		return nil, nil
	}
	return &out, nil
}
