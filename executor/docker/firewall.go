package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// ErrNoFirewall: the host firewall rules that keep a service network's
// containers away from the host could not be set up, so no service starts.
var ErrNoFirewall = errors.New("host firewall for service networks unavailable")

// bridgeName is the Linux bridge interface of the service network called
// network: a fixed, short name (at most 15 bytes) so that firewall rules
// can name it before the network exists.
func bridgeName(network string) string {
	sum := sha256.Sum256([]byte(network))
	return "ofl-" + hex.EncodeToString(sum[:5])
}

// hostRules are the iptables INPUT rules (in insertion order: the last one
// ends up first) that stop packets from a service network's bridge from
// reaching any address of the host, while letting the answers to the
// host's own connections (tunnels to the services) in. Traffic between
// containers on the bridge is forwarded, never INPUT, so services still
// reach each other.
func hostRules(bridge string) [][]string {
	return [][]string{
		{"INPUT", "-i", bridge, "-j", "DROP", "-m", "comment", "--comment", "offload: service network to host"},
		{"INPUT", "-i", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT",
			"-m", "comment", "--comment", "offload: answers to the host's tunnels"},
	}
}

// iptables runs one iptables command (waiting for the xtables lock).
func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w", "5"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// fenceHost installs the host rules of bridge unless they are there.
func fenceHost(bridge string) error {
	for _, r := range hostRules(bridge) {
		if iptables(append([]string{"-C"}, r...)...) == nil {
			continue
		}
		if err := iptables(append([]string{"-I"}, r...)...); err != nil {
			return fmt.Errorf("%w: %w", ErrNoFirewall, err)
		}
	}
	return nil
}

// unfenceHost removes the host rules of bridge (every copy of them).
func unfenceHost(bridge string) error {
	var errs []error
	for _, r := range hostRules(bridge) {
		for i := 0; i < 8 && iptables(append([]string{"-C"}, r...)...) == nil; i++ {
			if err := iptables(append([]string{"-D"}, r...)...); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	return errors.Join(errs...)
}
