package dns

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// ResolvConf is what a resolv.conf file says, as far as the kubelet reads one.
type ResolvConf struct {
	Nameservers []string
	Searches    []string
	Options     []string
}

// ReadResolvConf reads a resolv.conf file; "" reads nothing and says nothing.
func ReadResolvConf(path string) (ResolvConf, error) {
	if path == "" {
		return ResolvConf{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return ResolvConf{}, fmt.Errorf("reading resolver config: %w", err)
	}
	defer f.Close()
	return ParseResolvConf(f)
}

// ParseResolvConf reads nameserver, search and options lines as resolv.conf(5) does: the last search
// line wins, comments start with # or ;.
func ParseResolvConf(r io.Reader) (ResolvConf, error) {
	var rc ResolvConf
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
		return ResolvConf{}, fmt.Errorf("reading resolver config: %w", err)
	}
	return rc, nil
}
