package logs

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Each acknowledgement appends one line; a restart reads them back, later lines winning, and the journal
// is rewritten as one line before it grows past compactEvery.
func TestCheckpointsAreAJournalOfChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "checkpoints.json")
	c, err := loadCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := c.set(map[string]Position{"/a": {Inode: 1, Offset: int64(i)}, "/b": {Inode: 2, Offset: int64(100 + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.set(map[string]Position{"/a": {Inode: 3, Offset: 7}}); err != nil {
		t.Fatal(err)
	}
	c.close()
	// The first change after loading rewrote the file; the ten after it were appended.
	if n := lines(t, path); n != 11 {
		t.Errorf("%d lines after 11 changes, want the rewrite and 10 appended", n)
	}
	again, err := loadCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := again.get("/a"), again.get("/b"); a != (Position{Inode: 3, Offset: 7}) || b != (Position{Inode: 2, Offset: 109}) {
		t.Errorf("after a restart /a is at %+v and /b at %+v, want {3 7} and {2 109}", a, b)
	}
	for i := range compactEvery + 10 {
		if err := again.set(map[string]Position{"/b": {Inode: 2, Offset: int64(200 + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	again.close()
	if n := lines(t, path); n > 10 {
		t.Errorf("%d lines after %d changes, want the journal rewritten after %d", n, compactEvery+10, compactEvery)
	}
	last, err := loadCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	if b := last.get("/b"); b != (Position{Inode: 2, Offset: 200 + compactEvery + 9}) {
		t.Errorf("/b at %+v after the rewrite, want offset %d", b, 200+compactEvery+9)
	}
}

// A power loss may cut the last line short: the positions before it hold, and the next change rewrites
// the file so that nothing is appended after the cut. A damaged line before the last is an error.
func TestCheckpointsIgnoreALastLineCutShort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoints.json")
	journal := `{"/a":{"Inode":1,"Offset":10}}` + "\n" + `{"/a":{"Inode":1,"Offset":20}}` + "\n" + `{"/a":{"Ino`
	if err := os.WriteFile(path, []byte(journal), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	if a := c.get("/a"); a != (Position{Inode: 1, Offset: 20}) {
		t.Fatalf("/a at %+v, want the last whole line's {1 20}", a)
	}
	if err := c.set(map[string]Position{"/b": {Inode: 2, Offset: 5}}); err != nil {
		t.Fatal(err)
	}
	c.close()
	again, err := loadCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := again.get("/a"), again.get("/b"); a != (Position{Inode: 1, Offset: 20}) || b != (Position{Inode: 2, Offset: 5}) {
		t.Errorf("after the next change and a restart: /a %+v, /b %+v", a, b)
	}

	damaged := `{"/a":{"Ino` + "\n" + `{"/a":{"Inode":1,"Offset":20}}` + "\n"
	if err := os.WriteFile(path, []byte(damaged), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCheckpoints(path); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a damaged first line: %v, want an error naming line 1", err)
	}
}

// The file an earlier version wrote (one JSON object, no newline) is read, and the first change rewrites it.
func TestCheckpointsReadTheEarlierFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoints.json")
	if err := os.WriteFile(path, []byte(`{"/a":{"Inode":1,"Offset":10},"/b":{"Inode":2,"Offset":30}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.set(map[string]Position{"/a": {Inode: 1, Offset: 11}}); err != nil {
		t.Fatal(err)
	}
	if err := c.keepOnly(func(path string) bool { return path == "/a" }); err != nil {
		t.Fatal(err)
	}
	c.close()
	again, err := loadCheckpoints(path)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := again.get("/a"), again.get("/b"); a != (Position{Inode: 1, Offset: 11}) || b != (Position{}) {
		t.Errorf("/a %+v, /b %+v; want {1 11} and /b forgotten", a, b)
	}
}

func lines(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(data, []byte("\n"))
}
