package spec

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Scheduler is process.scheduler as sched_setattr(2) takes it.
type Scheduler struct {
	Policy   uint32
	Flags    uint64
	Nice     int32
	Priority uint32
	Runtime  uint64
	Deadline uint64
	Period   uint64
}

// schedOther is SCHED_NORMAL (0), which x/sys does not name.
const schedOther = 0

// schedPolicies are the policies Linux has; SCHED_ISO is in the spec but
// was never merged into Linux.
var schedPolicies = map[specs.LinuxSchedulerPolicy]uint32{
	specs.SchedOther:    schedOther,
	specs.SchedFIFO:     unix.SCHED_FIFO,
	specs.SchedRR:       unix.SCHED_RR,
	specs.SchedBatch:    unix.SCHED_BATCH,
	specs.SchedIdle:     unix.SCHED_IDLE,
	specs.SchedDeadline: unix.SCHED_DEADLINE,
}

// schedFlags are the sched_attr flags the spec can name. The utilization
// clamps are left out: the spec has no field for their values, so setting
// the flag would clamp to 0.
var schedFlags = map[specs.LinuxSchedulerFlag]uint64{
	specs.SchedFlagResetOnFork: unix.SCHED_FLAG_RESET_ON_FORK,
	specs.SchedFlagReclaim:     unix.SCHED_FLAG_RECLAIM,
	specs.SchedFlagDLOverrun:   unix.SCHED_FLAG_DL_OVERRUN,
	specs.SchedFlagKeepPolicy:  unix.SCHED_FLAG_KEEP_POLICY,
	specs.SchedFlagKeepParams:  unix.SCHED_FLAG_KEEP_PARAMS,
}

func convertScheduler(s *specs.Scheduler) (*Scheduler, error) {
	if s == nil {
		return nil, nil
	}
	const field = "process.scheduler"
	policy, ok := schedPolicies[s.Policy]
	if !ok {
		return nil, invalid(field+".policy", "%q is not one of SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE", s.Policy)
	}
	out := &Scheduler{Policy: policy, Nice: s.Nice, Runtime: s.Runtime, Deadline: s.Deadline, Period: s.Period}
	for i, f := range s.Flags {
		v, ok := schedFlags[f]
		if !ok {
			return nil, invalid(fmt.Sprintf("%s.flags[%d]", field, i), "%q is not a scheduler flag this runtime can set (the utilization clamps need values the spec does not carry)", f)
		}
		out.Flags |= v
	}
	if s.Nice < -20 || s.Nice > 19 {
		return nil, invalid(field+".nice", "%d is outside [-20, 19]", s.Nice)
	}
	// The kernel's rules (sched_setattr(2)), checked here so that the
	// error names the field instead of a bare EINVAL at create.
	switch policy {
	case unix.SCHED_FIFO, unix.SCHED_RR:
		if s.Priority < 1 || s.Priority > 99 {
			return nil, invalid(field+".priority", "%d: %s needs a priority in [1, 99]", s.Priority, s.Policy)
		}
	default:
		if s.Priority != 0 {
			return nil, invalid(field+".priority", "%d: %s takes priority 0 only", s.Priority, s.Policy)
		}
	}
	out.Priority = uint32(s.Priority)
	if policy == unix.SCHED_DEADLINE {
		period := s.Period
		if period == 0 {
			period = s.Deadline
		}
		if s.Runtime < 1024 || s.Runtime > s.Deadline || s.Deadline > period {
			return nil, invalid(field, "SCHED_DEADLINE needs 1024 <= runtime <= deadline <= period (ns); got %d, %d, %d", s.Runtime, s.Deadline, s.Period)
		}
	} else if s.Runtime != 0 || s.Deadline != 0 || s.Period != 0 {
		return nil, invalid(field, "runtime, deadline and period are for SCHED_DEADLINE only, not %s", s.Policy)
	}
	return out, nil
}

// ioprio_set(2) encoding (linux/ioprio.h).
const (
	ioprioClassShift = 13
	ioprioClassRT    = 1
	ioprioClassBE    = 2
	ioprioClassIdle  = 3
)

// convertIOPriority returns the ioprio value for ioprio_set(2), or nil.
func convertIOPriority(p *specs.LinuxIOPriority) (*int, error) {
	if p == nil {
		return nil, nil
	}
	const field = "process.ioPriority"
	var class int
	switch p.Class {
	case specs.IOPRIO_CLASS_RT:
		class = ioprioClassRT
	case specs.IOPRIO_CLASS_BE:
		class = ioprioClassBE
	case specs.IOPRIO_CLASS_IDLE:
		class = ioprioClassIdle
	default:
		return nil, invalid(field+".class", "%q is not one of IOPRIO_CLASS_RT, IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE", p.Class)
	}
	if p.Priority < 0 || p.Priority > 7 {
		return nil, invalid(field+".priority", "%d is outside [0, 7]", p.Priority)
	}
	v := class<<ioprioClassShift | p.Priority
	return &v, nil
}

// Personalities (linux/personality.h).
const (
	perLinux   = 0x0000
	perLinux32 = 0x0008
)

// convertPersonality returns the persona for personality(2), or nil.
func convertPersonality(p *specs.LinuxPersonality) (*uint32, error) {
	if p == nil {
		return nil, nil
	}
	var v uint32
	switch p.Domain {
	case specs.PerLinux:
		v = perLinux
	case specs.PerLinux32:
		v = perLinux32
	default:
		return nil, invalid("linux.personality.domain", "%q is not one of LINUX, LINUX32", p.Domain)
	}
	if len(p.Flags) > 0 {
		// The spec defines no flag; runc refuses them as well.
		return nil, invalid("linux.personality.flags", "%q: no personality flag is defined", p.Flags)
	}
	return &v, nil
}

// TimeOffset is one clock's offset in a new time namespace.
type TimeOffset struct {
	Clock    string // "monotonic" or "boottime", as /proc/PID/timens_offsets names them
	Secs     int64
	Nanosecs uint32
}

// convertTimeOffsets checks linux.timeOffsets: they are written before the
// namespace has a process, so they need a time namespace the container
// creates, not one it joins.
func convertTimeOffsets(in map[string]specs.LinuxTimeOffset, ns Namespaces) ([]TimeOffset, error) {
	var out []TimeOffset
	for _, clock := range []string{"boottime", "monotonic"} {
		o, ok := in[clock]
		if !ok {
			continue
		}
		if o.Nanosecs >= 1e9 {
			return nil, invalid(fmt.Sprintf("linux.timeOffsets[%q].nanosecs", clock), "%d is not below 1e9", o.Nanosecs)
		}
		out = append(out, TimeOffset{Clock: clock, Secs: o.Secs, Nanosecs: o.Nanosecs})
	}
	for clock := range in {
		if clock != "boottime" && clock != "monotonic" {
			return nil, invalid(fmt.Sprintf("linux.timeOffsets[%q]", clock), "not a clock a time namespace offsets: boottime, monotonic")
		}
	}
	if len(out) > 0 && !ns.NewTimeNS {
		return nil, invalid("linux.timeOffsets", "needs a new time namespace (a \"time\" entry without path in linux.namespaces)")
	}
	return out, nil
}
