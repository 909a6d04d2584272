package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigDocsFresh fails when docs/configuration.md differs from what the code generates:
// a flag was added, renamed or changed without `make config-docs`.
func TestConfigDocsFresh(t *testing.T) {
	root := newRootCmd(func(string) string { return "" }, io.Discard, io.Discard)
	want := configReference(root)
	path := filepath.Join("..", "..", configDocsPath)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v (run `make config-docs`)", configDocsPath, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run `make config-docs` and commit it", configDocsPath)
	}
}

func TestConfigDocsListEveryServeFlagWithItsVariable(t *testing.T) {
	root := newRootCmd(func(string) string { return "" }, io.Discard, io.Discard)
	md := string(configReference(root))
	serve, _, err := root.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range documentedFlags(serve) {
		row := "| `--" + f.Name + "` | `" + envName(f.Name) + "` |"
		if !strings.Contains(md, row) {
			t.Errorf("reference has no row starting %q", row)
		}
	}
	if !strings.Contains(md, "| `--shutdown-timeout` | `COALITION_SHUTDOWN_TIMEOUT` | `20s` |") {
		t.Errorf("reference does not show --shutdown-timeout's default 20s")
	}
}

func TestDocsCommandIsHiddenAndWritesTheReference(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"docs", "config"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("coalition docs config: %v", err)
	}
	if !strings.HasPrefix(out.String(), "# Configuration reference") {
		t.Errorf("output starts %q, want the reference", firstLine(out.String()))
	}
	if strings.Contains(out.String(), "## `coalition docs") {
		t.Errorf("the hidden docs command documents itself")
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
