package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

const regenerate = "run `go generate ./dashboards`"

// TestGenerated checks that the committed dashboards/*.json are exactly what
// the generator writes, and that no committed dashboard lacks a generator.
func TestGenerated(t *testing.T) {
	files, err := render()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("the generator produced no dashboards")
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("..", name))
		if err != nil {
			t.Errorf("reading dashboards/%s (%s): %v", name, regenerate, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("dashboards/%s differs from the generator's output; %s", name, regenerate)
		}
	}
	committed, err := filepath.Glob(filepath.Join("..", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range committed {
		if _, ok := files[filepath.Base(f)]; !ok {
			t.Errorf("dashboards/%s is not produced by the generator", filepath.Base(f))
		}
	}
}

// TestWrite checks that the program writes what render returns.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	if err := write(dir); err != nil {
		t.Fatal(err)
	}
	files, err := render()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: written file differs from render's output (err %v)", name, err)
		}
	}
}
