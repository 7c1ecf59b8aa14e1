package docker

// HostRulesForTest exposes the firewall rules of a service network.
func HostRulesForTest(network string) [][]string { return hostRules(bridgeName(network)) }
