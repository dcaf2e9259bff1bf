package events

// The BPF objects are generated from bpf/tcpevents.c and committed, so that
// building the exporter needs no C toolchain. Regenerate with `go generate
// ./events` (clang and llvm-strip required); TestGenerateReproducible checks
// that the committed files are what the sources produce.
//
//go:generate go tool bpf2go -cc clang -strip llvm-strip -no-global-types tcpevents bpf/tcpevents.c -- -Wall -Werror
