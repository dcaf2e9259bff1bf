package events

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// seedKeys are keys as the programs write them (see the records logged by
// the kernel tests).
var seedKeys = []Key{
	{Netns: 4097, Kind: KindOpen, Code: uint32(DirectionActive), Addr: netip.MustParseAddr("127.0.0.1"), RemotePort: 42055},
	{Netns: 4097, Kind: KindOpen, Code: uint32(DirectionPassive), Addr: netip.MustParseAddr("0.0.0.0"), LocalPort: 42055},
	{Netns: 4097, Kind: KindResetSent, Code: 1, Addr: netip.MustParseAddr("fd00:5::2"), LocalPort: 80, RemotePort: 50000},
	{Netns: 1, Kind: KindConnectFailure, Code: errECONNREFUSED},
}

func TestKeyRoundTrip(t *testing.T) {
	for _, k := range seedKeys {
		got, err := DecodeKey(encodeKey(k))
		if err != nil {
			t.Fatalf("%+v: %v", k, err)
		}
		if got != k {
			t.Errorf("round trip: %+v, want %+v", got, k)
		}
	}
	v := Value{Count: 3, LifetimeSum: 3 * time.Second, Lifetime: [12]uint64{1, 0, 0, 0, 0, 2}}
	got, err := DecodeValue(encodeValue(v))
	if err != nil || got != v {
		t.Errorf("value round trip: %+v, %v", got, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	if _, err := DecodeKey(make([]byte, KeySize-1)); !errors.Is(err, ErrRecordSize) {
		t.Errorf("short key: %v, want ErrRecordSize", err)
	}
	if _, err := DecodeKey(make([]byte, KeySize+8)); !errors.Is(err, ErrRecordSize) {
		t.Errorf("long key: %v, want ErrRecordSize", err)
	}
	if _, err := DecodeKey(make([]byte, KeySize)); !errors.Is(err, ErrRecordKind) {
		t.Errorf("kind 0: %v, want ErrRecordKind", err)
	}
	b := encodeKey(seedKeys[0])
	b[36] = 7
	if _, err := DecodeKey(b); !errors.Is(err, ErrFamily) {
		t.Errorf("family 7: %v, want ErrFamily", err)
	}
	if _, err := DecodeValue(make([]byte, ValueSize-8)); !errors.Is(err, ErrRecordSize) {
		t.Errorf("short value: %v, want ErrRecordSize", err)
	}
	s := &Snapshot{Namespaces: map[uint64]*Namespace{}}
	s.add(true, b, make([]byte, ValueSize))
	s.add(false, encodeKey(seedKeys[3]), make([]byte, 3))
	if s.Skipped != 2 || s.Err == nil || len(s.Namespaces) != 0 {
		t.Errorf("bad records: skipped %d, err %v, namespaces %d; want 2 skipped, an error, none filed", s.Skipped, s.Err, len(s.Namespaces))
	}
}

func FuzzDecodeKey(f *testing.F) {
	for _, k := range seedKeys {
		f.Add(encodeKey(k))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodeKey(b)
		if err != nil {
			return
		}
		if len(b) != KeySize {
			t.Fatalf("decoded %d bytes", len(b))
		}
		if k.Kind < 1 || k.Kind > maxKind {
			t.Fatalf("kind %d accepted", k.Kind)
		}
		// A decoded key encodes back to the same bytes, apart from the
		// padding and the address bytes a family does not use.
		again, err := DecodeKey(encodeKey(k))
		if err != nil || again != k {
			t.Fatalf("re-decode: %+v, %v; want %+v", again, err, k)
		}
	})
}

func FuzzDecodeValue(f *testing.F) {
	f.Add(encodeValue(Value{Count: 1, LifetimeSum: time.Millisecond, Lifetime: [12]uint64{1}}))
	f.Add(bytes.Repeat([]byte{0xff}, ValueSize))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeValue(b)
		if err != nil {
			if len(b) == ValueSize {
				t.Fatalf("rejected a value of the right size: %v", err)
			}
			return
		}
		if v.LifetimeSum < 0 {
			t.Fatalf("negative lifetime sum %v", v.LifetimeSum)
		}
	})
}
