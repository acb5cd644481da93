package spec

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capabilityNumbers maps capability names to their numbers (linux/capability.h).
var capabilityNumbers = map[string]uint{
	"CAP_CHOWN":              unix.CAP_CHOWN,
	"CAP_DAC_OVERRIDE":       unix.CAP_DAC_OVERRIDE,
	"CAP_DAC_READ_SEARCH":    unix.CAP_DAC_READ_SEARCH,
	"CAP_FOWNER":             unix.CAP_FOWNER,
	"CAP_FSETID":             unix.CAP_FSETID,
	"CAP_KILL":               unix.CAP_KILL,
	"CAP_SETGID":             unix.CAP_SETGID,
	"CAP_SETUID":             unix.CAP_SETUID,
	"CAP_SETPCAP":            unix.CAP_SETPCAP,
	"CAP_LINUX_IMMUTABLE":    unix.CAP_LINUX_IMMUTABLE,
	"CAP_NET_BIND_SERVICE":   unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_BROADCAST":      unix.CAP_NET_BROADCAST,
	"CAP_NET_ADMIN":          unix.CAP_NET_ADMIN,
	"CAP_NET_RAW":            unix.CAP_NET_RAW,
	"CAP_IPC_LOCK":           unix.CAP_IPC_LOCK,
	"CAP_IPC_OWNER":          unix.CAP_IPC_OWNER,
	"CAP_SYS_MODULE":         unix.CAP_SYS_MODULE,
	"CAP_SYS_RAWIO":          unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT":         unix.CAP_SYS_CHROOT,
	"CAP_SYS_PTRACE":         unix.CAP_SYS_PTRACE,
	"CAP_SYS_PACCT":          unix.CAP_SYS_PACCT,
	"CAP_SYS_ADMIN":          unix.CAP_SYS_ADMIN,
	"CAP_SYS_BOOT":           unix.CAP_SYS_BOOT,
	"CAP_SYS_NICE":           unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE":       unix.CAP_SYS_RESOURCE,
	"CAP_SYS_TIME":           unix.CAP_SYS_TIME,
	"CAP_SYS_TTY_CONFIG":     unix.CAP_SYS_TTY_CONFIG,
	"CAP_MKNOD":              unix.CAP_MKNOD,
	"CAP_LEASE":              unix.CAP_LEASE,
	"CAP_AUDIT_WRITE":        unix.CAP_AUDIT_WRITE,
	"CAP_AUDIT_CONTROL":      unix.CAP_AUDIT_CONTROL,
	"CAP_SETFCAP":            unix.CAP_SETFCAP,
	"CAP_MAC_OVERRIDE":       unix.CAP_MAC_OVERRIDE,
	"CAP_MAC_ADMIN":          unix.CAP_MAC_ADMIN,
	"CAP_SYSLOG":             unix.CAP_SYSLOG,
	"CAP_WAKE_ALARM":         unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND":      unix.CAP_BLOCK_SUSPEND,
	"CAP_AUDIT_READ":         unix.CAP_AUDIT_READ,
	"CAP_PERFMON":            unix.CAP_PERFMON,
	"CAP_BPF":                unix.CAP_BPF,
	"CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// CapabilityNames lists every capability NewPlan accepts, by number: the
// capabilities of the OCI features document.
func CapabilityNames() []string {
	out := make([]string, len(capabilityNumbers))
	for name, n := range capabilityNumbers {
		out[n] = name
	}
	return out
}

// CapabilityNumber returns the number of a capability name such as
// "CAP_SYS_ADMIN".
func CapabilityNumber(name string) (uint, bool) {
	n, ok := capabilityNumbers[name]
	return n, ok
}

func capMask(field string, names []string) (uint64, error) {
	var m uint64
	for i, name := range names {
		n, ok := capabilityNumbers[name]
		if !ok {
			return 0, invalid(fmt.Sprintf("%s[%d]", field, i), "unknown capability %q", name)
		}
		m |= 1 << n
	}
	return m, nil
}

func convertCapabilities(c *specs.LinuxCapabilities) (*Capabilities, error) {
	if c == nil {
		return nil, nil
	}
	var out Capabilities
	var err error
	for _, s := range []struct {
		field string
		names []string
		dst   *uint64
	}{
		{"process.capabilities.bounding", c.Bounding, &out.Bounding},
		{"process.capabilities.effective", c.Effective, &out.Effective},
		{"process.capabilities.permitted", c.Permitted, &out.Permitted},
		{"process.capabilities.inheritable", c.Inheritable, &out.Inheritable},
		{"process.capabilities.ambient", c.Ambient, &out.Ambient},
	} {
		if *s.dst, err = capMask(s.field, s.names); err != nil {
			return nil, err
		}
	}
	// The kernel refuses capset() with effective outside permitted, and
	// raising an ambient capability needs it in permitted and inheritable.
	// runc lets capset fail at start; a clear error at create is better.
	if extra := out.Effective &^ out.Permitted; extra != 0 {
		return nil, invalid("process.capabilities.effective", "%s not in the permitted set", capNames(extra))
	}
	if extra := out.Ambient &^ (out.Permitted & out.Inheritable); extra != 0 {
		return nil, invalid("process.capabilities.ambient", "%s not in both the permitted and the inheritable set", capNames(extra))
	}
	return &out, nil
}

func capNames(mask uint64) string {
	var s string
	for name, n := range capabilityNumbers {
		if mask&(1<<n) != 0 {
			if s == "" || name < s {
				s = name
			}
		}
	}
	return s
}
