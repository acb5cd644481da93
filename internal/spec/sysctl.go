package spec

import (
	"fmt"
	"path"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ipcSysctls are the kernel.* sysctls that the ipc namespace isolates.
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true,
	"kernel.shm_rmid_forced": true,
}

// sysctlNamespace says which namespace isolates the sysctl key (in dotted
// form), or "" when none does: such a sysctl would change the host.
func sysctlNamespace(key string) specs.LinuxNamespaceType {
	switch {
	case ipcSysctls[key], strings.HasPrefix(key, "fs.mqueue."):
		return specs.IPCNamespace
	case strings.HasPrefix(key, "net."):
		return specs.NetworkNamespace
	case key == "kernel.hostname", key == "kernel.domainname":
		return specs.UTSNamespace
	}
	return ""
}

func convertSysctl(in map[string]string, ns Namespaces) ([]Sysctl, error) {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Sysctl
	for _, k := range keys {
		field := fmt.Sprintf("linux.sysctl[%q]", k)
		// Keys come dotted ("net.ipv4.ip_forward") or as a path
		// ("net/ipv4/conf/eth0.100/rp_filter", for names with dots).
		var rel string
		if strings.Contains(k, "/") {
			rel = k
		} else {
			rel = strings.ReplaceAll(k, ".", "/")
		}
		if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel || strings.HasPrefix(rel, "../") || rel == ".." {
			return nil, invalid(field, "not a sysctl name")
		}
		dotted := strings.ReplaceAll(rel, "/", ".")
		t := sysctlNamespace(dotted)
		switch {
		case t == "":
			return nil, invalid(field, "the sysctl is not isolated by a namespace this container has: it would change the host")
		case t == specs.UTSNamespace:
			return nil, invalid(field, "use the hostname/domainname fields instead")
		case !ns.has(t):
			return nil, invalid(field, "needs a %s namespace", t)
		}
		out = append(out, Sysctl{Key: k, Path: rel, Value: in[k]})
	}
	return out, nil
}

// SysctlsFor lists the plan's sysctl keys that act on a namespace of type t
// (network or ipc): they must not be written when the container joins the
// runtime's own namespace of that type, which would change the host.
func (p *Plan) SysctlsFor(t specs.LinuxNamespaceType) []string {
	var keys []string
	for _, s := range p.Sysctl {
		if sysctlNamespace(strings.ReplaceAll(s.Path, "/", ".")) == t {
			keys = append(keys, s.Key)
		}
	}
	return keys
}
