package linux

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Host facts the daemon and the setup faces both ask.

// lastCap reads the highest capability the running kernel knows; the spec
// may name newer ones (runc ignores those too).
func LastCap() (uint, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 8)
	if err != nil || n > 63 {
		return 0, fmt.Errorf("/proc/sys/kernel/cap_last_cap: bad value %q", b)
	}
	return uint(n), nil
}

// AppArmorEnabled says whether the host's kernel enforces AppArmor: the
// module's "enabled" parameter is Y (the LSM framework clears it when
// AppArmor is built in but not chosen at boot), or, without that file,
// securityfs lists apparmor among the active LSMs. Read once per process:
// the daemon decides Create and Exec from it, -info advertises it.
var AppArmorEnabled = sync.OnceValue(func() bool {
	if b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil {
		return strings.TrimSpace(string(b)) == "Y"
	}
	b, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), ",") {
		if l == "apparmor" {
			return true
		}
	}
	return false
})
