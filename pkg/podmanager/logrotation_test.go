package podmanager

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRotateLogKeepsMaxFilesCompressesAndReopens(t *testing.T) {
	f := newFixture(t, testPod("img"))
	m := f.worker.m
	m.cfg.LogRotation = LogRotation{MaxSize: 10, MaxFiles: 4}
	dir := t.TempDir()
	log := filepath.Join(dir, "0.log")
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("0.log", "live output past the limit\n")
	write("0.log.20260101-000001.gz", "oldest")
	write("0.log.20260101-000002.gz", "older")
	write("0.log.20260101-000003", "newest rotated, still plain\n")
	write("0.log.20260101-000004.gz.tmp", "a crash's leftover")

	if err := m.rotateLog(context.Background(), "cid", log); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	// MaxFiles 4: the live log (reopened by the runtime), the log just rotated, and two older, compressed.
	if len(names) != 3 || !slices.Contains(names, "0.log.20260101-000002.gz") || !slices.Contains(names, "0.log.20260101-000003.gz") {
		t.Fatalf("files after rotation = %v", names)
	}
	var fresh string
	for _, n := range names {
		if !strings.HasSuffix(n, ".gz") {
			fresh = n
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dir, fresh)); string(data) != "live output past the limit\n" {
		t.Errorf("rotated file %s holds %q", fresh, data)
	}
	if got := gunzip(t, filepath.Join(dir, "0.log.20260101-000003.gz")); got != "newest rotated, still plain\n" {
		t.Errorf("compressed file holds %q", got)
	}
	if countCalls(f.runtime.FakeRuntimeService.Called, "ReopenContainerLog") != 1 {
		t.Error("the runtime was not asked to reopen the log")
	}

	// A runtime that cannot reopen the log gets it back under its name, to try again next round.
	write("0.log", "more output past the limit\n")
	f.runtime.FakeRuntimeService.InjectError("ReopenContainerLog", errors.New("no such container"))
	if err := m.rotateLog(context.Background(), "cid", log); err == nil {
		t.Error("rotation with a failing ReopenContainerLog reported no error")
	}
	if data, err := os.ReadFile(log); err != nil || string(data) != "more output past the limit\n" {
		t.Errorf("live log after a failed reopen = %q, %v", data, err)
	}
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
