package collector

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// addrPair is the key of the per-socket tables of a full dump: a family, a
// port and two addresses in their 16-byte form (IPv4 as IPv4-mapped). The
// client table keys it by (family, local port, local, remote), the
// destination table by (family, remote port, local, remote).
type addrPair struct {
	fam    uint16
	port   uint16
	local  [16]byte
	remote [16]byte
}

// pairSlot is one slot of a pairTable: the key as words, and its index
// plus one (0: empty).
type pairSlot struct {
	w   [4]uint64 // local and remote address
	fp  uint32    // family and port
	idx int32
}

// pairTable indexes the keys of one dump in the order they were first
// seen: an open-addressing table with linear probing, at most half full,
// whose slots hold the keys as words. It hashes the fixed-size key with a
// few multiplications under a random seed of its own (so that remote
// addresses chosen by clients cannot be made to collide on purpose, as
// with Go's maps), compares keys without calling into the runtime, and is
// cleared, not reallocated, between dumps: once grown to a dump's size it
// allocates nothing.
//
// It replaces a map[addrPair]int32 on the per-socket path, where the map's
// generic hashing and comparing of a 36-byte key cost more than the rest
// of a socket's aggregation.
type pairTable struct {
	seed  [6]uint64
	slots []pairSlot
	mask  uint64
	// keys are the keys by index.
	keys []addrPair
}

func newPairTable() pairTable {
	var t pairTable
	for i := range t.seed {
		t.seed[i] = rand.Uint64()
	}
	return t
}

// reset empties the table, keeping its memory.
func (t *pairTable) reset() {
	clear(t.slots)
	t.keys = t.keys[:0]
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func pairWords(k *addrPair) (w [4]uint64, fp uint32) {
	w[0] = binary.LittleEndian.Uint64(k.local[:8])
	w[1] = binary.LittleEndian.Uint64(k.local[8:])
	w[2] = binary.LittleEndian.Uint64(k.remote[:8])
	w[3] = binary.LittleEndian.Uint64(k.remote[8:])
	return w, uint32(k.fam)<<16 | uint32(k.port)
}

func (t *pairTable) hash(w *[4]uint64, fp uint32) uint64 {
	h := mix(w[0]^t.seed[0], w[1]^t.seed[1]) ^ mix(w[2]^t.seed[2], w[3]^t.seed[3])
	return mix(h^t.seed[4], uint64(fp)^t.seed[5])
}

// index returns k's index, adding k as the next one (len(keys) before the
// call) when it is new and fewer than limit keys are held; -1 when it is
// new and the table holds limit keys.
func (t *pairTable) index(k *addrPair, limit int) int32 {
	w, fp := pairWords(k)
	h := t.hash(&w, fp)
	if t.slots != nil {
		for i := h & t.mask; ; i = (i + 1) & t.mask {
			s := &t.slots[i]
			if s.idx == 0 {
				break
			}
			if s.w[0] == w[0] && s.w[1] == w[1] && s.w[2] == w[2] && s.w[3] == w[3] && s.fp == fp {
				return s.idx - 1
			}
		}
	}
	if len(t.keys) >= limit {
		return -1
	}
	if 2*(len(t.keys)+1) > len(t.slots) {
		t.grow()
	}
	t.keys = append(t.keys, *k)
	t.place(h, pairSlot{w: w, fp: fp, idx: int32(len(t.keys))})
	return int32(len(t.keys) - 1)
}

// place puts s in the first free slot from h's.
func (t *pairTable) place(h uint64, s pairSlot) {
	i := h & t.mask
	for t.slots[i].idx != 0 {
		i = (i + 1) & t.mask
	}
	t.slots[i] = s
}

// grow doubles the slots (64 at first) and places the keys again.
func (t *pairTable) grow() {
	n := max(2*len(t.slots), 64)
	t.slots = make([]pairSlot, n)
	t.mask = uint64(n - 1)
	for i := range t.keys {
		w, fp := pairWords(&t.keys[i])
		t.place(t.hash(&w, fp), pairSlot{w: w, fp: fp, idx: int32(i + 1)})
	}
}
