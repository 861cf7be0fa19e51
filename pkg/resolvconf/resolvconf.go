// Package resolvconf reads the node's resolver file (resolv.conf) as the kubelet does: the part pods'
// resolvers and the DNS server's upstreams are made from. It only reads files.
package resolvconf

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// File is what a resolv.conf file says, as far as the kubelet reads one.
type File struct {
	Nameservers []string
	Searches    []string
	Options     []string
}

// Read reads a resolv.conf file; "" reads nothing and says nothing.
func Read(path string) (File, error) {
	if path == "" {
		return File{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return File{}, fmt.Errorf("reading resolver config: %w", err)
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads nameserver, search and options lines as resolv.conf(5) does: the last search
// line wins, comments start with # or ;.
func Parse(r io.Reader) (File, error) {
	var rc File
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		line := scanner.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			rc.Nameservers = append(rc.Nameservers, fields[1])
		case "search", "domain":
			rc.Searches = fields[1:]
		case "options":
			rc.Options = append(rc.Options, fields[1:]...)
		}
	}
	if err := scanner.Err(); err != nil {
		return File{}, fmt.Errorf("reading resolver config: %w", err)
	}
	return rc, nil
}
