//go:build unix && !linux

package safefs

// openBeneath has no single-call form outside Linux: the caller walks one
// element at a time.
func (d *Dir) openBeneath(rel string, n int) (*Dir, error) { return nil, errOpenat2Off }
