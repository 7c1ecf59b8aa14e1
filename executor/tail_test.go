package executor_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/offload-project/offload/executor"
)

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		cap    int64
		writes []string
		want   string
	}{
		{"empty", 4, nil, ""},
		{"under cap", 8, []string{"ab", "cd"}, "abcd"},
		{"exactly cap", 4, []string{"ab", "cd"}, "abcd"},
		{"wraps", 4, []string{"abc", "def"}, "cdef"},
		{"one big write", 4, []string{"abcdefgh"}, "efgh"},
		{"big after small", 4, []string{"a", "bcdefg"}, "defg"},
		{"many small", 3, []string{"a", "b", "c", "d", "e"}, "cde"},
		{"wrap twice", 5, []string{"abcd", "efgh", "ijkl"}, "hijkl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := executor.NewTailBuffer(tt.cap)
			var total int64
			for _, w := range tt.writes {
				n, err := b.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
				total += int64(len(w))
			}
			if got := string(b.Bytes()); got != tt.want {
				t.Errorf("Bytes() = %q, want %q", got, tt.want)
			}
			if b.Total() != total {
				t.Errorf("Total() = %d, want %d", b.Total(), total)
			}
			if b.Len() != len(tt.want) {
				t.Errorf("Len() = %d, want %d", b.Len(), len(tt.want))
			}
		})
	}
}

func TestTailBufferMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		capBytes := 1 + r.IntN(50)
		b := executor.NewTailBuffer(int64(capBytes))
		var all bytes.Buffer
		for range r.IntN(30) {
			p := make([]byte, r.IntN(2*capBytes))
			for j := range p {
				p[j] = byte('a' + r.IntN(26))
			}
			b.Write(p)
			all.Write(p)
		}
		want := all.Bytes()
		if len(want) > capBytes {
			want = want[len(want)-capBytes:]
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("case %d (cap %d): got %q want %q", i, capBytes, b.Bytes(), want)
		}
		if b.Total() != int64(all.Len()) {
			t.Fatalf("case %d: total %d want %d", i, b.Total(), all.Len())
		}
	}
}

func TestTailBufferDefaultCap(t *testing.T) {
	b := executor.NewTailBuffer(0)
	fmt.Fprint(b, string(make([]byte, executor.DefaultOutputCap+10)))
	if b.Len() != executor.DefaultOutputCap || b.Total() != executor.DefaultOutputCap+10 {
		t.Errorf("len %d total %d", b.Len(), b.Total())
	}
}
