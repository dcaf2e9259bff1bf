package collector

import (
	"math/rand/v2"
	"testing"
)

// TestPairTable checks the table against a map over keys that differ in
// each field, across growth, the limit and a reset.
func TestPairTable(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var keys []addrPair
	for i := range 5000 {
		var k addrPair
		switch i % 4 {
		case 0:
			k.remote[15], k.remote[14] = byte(i), byte(i>>8)
		case 1:
			k.local[r.IntN(16)] = byte(r.Uint32())
			k.remote[r.IntN(16)] = byte(r.Uint32())
		case 2:
			k.port = uint16(i)
		case 3:
			k.fam = uint16(i)
		}
		keys = append(keys, k)
	}
	tab := newPairTable()
	for round := range 2 {
		want := map[addrPair]int32{}
		const limit = 3000
		for _, k := range keys {
			i := tab.index(&k, limit)
			j, seen := want[k]
			switch {
			case seen && i != j:
				t.Fatalf("round %d: %v: index %d, first given %d", round, k, i, j)
			case !seen && len(want) < limit && i != int32(len(want)):
				t.Fatalf("round %d: new %v: index %d, want %d", round, k, i, len(want))
			case !seen && len(want) >= limit && i != -1:
				t.Fatalf("round %d: %v beyond the limit: index %d, want -1", round, k, i)
			case !seen && i >= 0:
				want[k] = i
			}
		}
		if len(want) < 1000 || len(tab.keys) != len(want) {
			t.Fatalf("round %d: %d keys held, %d distinct", round, len(tab.keys), len(want))
		}
		for k, j := range want {
			if tab.keys[j] != k {
				t.Errorf("round %d: keys[%d] = %v, want %v", round, j, tab.keys[j], k)
			}
			if i := tab.index(&k, 0); i != j {
				t.Errorf("round %d: %v: index %d, want %d", round, k, i, j)
			}
		}
		tab.reset()
		if i := tab.index(&keys[0], 0); i != -1 {
			t.Fatalf("after reset: index %d, want -1", i)
		}
	}
}
