package wire

import (
	"fmt"
	"slices"
	"strings"
)

// LabelAny is the value of a label requirement that any value of the label
// meets: the provider must have the label, whatever it says (DPhi's
// node="FPGA" is {"fpga": "*"}). The empty value means the same.
const LabelAny = "*"

// LabelBuildNetwork is the label a provider advertises when RUN steps of
// the images it builds may use a network (`offload node --build-network
// NAME`: the value is the network's name); a build that needs the network
// requires it (`offload image build --network`).
const LabelBuildNetwork = "build-network"

// ValidateLabelRequirements checks a task's label requirements with the
// limits of a capability record's labels: a requirement no record could
// meet is refused, not announced.
func ValidateLabelRequirements(want map[string]string) error {
	if len(want) > maxCapLabels {
		return invalid("more than %d label requirements", maxCapLabels)
	}
	for k, v := range want {
		if k == "" || len(k) > maxCapLabelLen || len(v) > maxCapLabelLen || strings.ContainsAny(k, "=,") {
			return invalid("label requirement %q: empty, too long or has '=' or ','", k)
		}
	}
	return nil
}

// LabelsUnmet returns "" when the labels in have meet every requirement
// of want (each key present, with the value asked unless it is LabelAny or
// empty), else the first unmet requirement in key order, said for a person.
func LabelsUnmet(have, want map[string]string) string {
	if len(want) == 0 {
		return ""
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := want[k]
		got, ok := have[k]
		switch {
		case !ok:
			return fmt.Sprintf("no label %s", k)
		case v != "" && v != LabelAny && got != v:
			return fmt.Sprintf("label %s=%q, not %q", k, got, v)
		}
	}
	return ""
}

// ParseLabelRequirement parses "key=value" (that value exactly) or "key"
// (the label with any value), as the CLI's --label takes it.
func ParseLabelRequirement(s string) (key, value string, err error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		v = LabelAny
	}
	if k == "" {
		return "", "", invalid("label requirement %q: want KEY or KEY=VALUE", s)
	}
	return k, v, nil
}
