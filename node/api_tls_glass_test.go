package node

import "testing"

// TestRemoteAPINeedsTLS: the one decision of where the API may listen and
// how it serves. Beyond loopback the API is refused without
// AllowRemoteAPI and, with it, is HTTPS whatever else is set: no
// combination of options serves plain HTTP there. (The tests listen on
// loopback only; TestAPIOverTLS serves the HTTPS this decides.)
func TestRemoteAPINeedsTLS(t *testing.T) {
	remote := []string{"0.0.0.0", "", "::", "192.0.2.10", "2001:db8::1", "example.com", "127.0.0.1.nip.io"}
	loopback := []string{"127.0.0.1", "127.8.9.10", "::1", "localhost"}
	for _, host := range remote {
		for _, force := range []bool{false, true} {
			for _, cert := range []string{"", "c.pem"} {
				key := ""
				if cert != "" {
					key = "k.pem"
				}
				if _, err := apiTLSPlan(host, false, force, cert, key); err == nil {
					t.Errorf("%q without allowRemote: no error", host)
				}
				plan, err := apiTLSPlan(host, true, force, cert, key)
				if err != nil {
					t.Errorf("%q allowed: %v", host, err)
					continue
				}
				want := tlsSelfSigned
				if cert != "" {
					want = tlsGiven
				}
				if plan != want {
					t.Errorf("%q (force %v, cert %q): plan %v, want %v", host, force, cert, plan, want)
				}
			}
		}
	}
	for _, host := range loopback {
		for _, tc := range []struct {
			force     bool
			cert, key string
			want      apiTLS
		}{
			{false, "", "", tlsOff},
			{true, "", "", tlsSelfSigned},
			{false, "c.pem", "k.pem", tlsGiven},
			{true, "c.pem", "k.pem", tlsGiven},
		} {
			for _, allow := range []bool{false, true} {
				plan, err := apiTLSPlan(host, allow, tc.force, tc.cert, tc.key)
				if err != nil || plan != tc.want {
					t.Errorf("%q (allow %v, force %v, cert %q): %v %v, want %v", host, allow, tc.force, tc.cert, plan, err, tc.want)
				}
			}
		}
	}
	for _, half := range [][2]string{{"c.pem", ""}, {"", "k.pem"}} {
		if _, err := apiTLSPlan("127.0.0.1", false, false, half[0], half[1]); err == nil {
			t.Errorf("cert %q key %q: no error", half[0], half[1])
		}
	}
}
