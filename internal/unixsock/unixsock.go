// Package unixsock opens the agent's unix sockets: the node API's local socket and the DNS socket holder's
// control socket. It owns nothing else.
package unixsock

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// Listen opens a unix socket at path that only root can use (mode 0600), making its directory with dirMode
// and replacing a socket a previous run left.
func Listen(path string, dirMode fs.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
