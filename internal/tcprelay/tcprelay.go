// Package tcprelay passes TCP connections from a listener to another address. Tests and benchmarks use it
// to make a server that listens on the host's loopback only (the harness's API server) reachable from
// where a client cannot reach loopback: a network namespace, a pod. It owns the listener it is given and
// the connections it makes; it touches nothing else.
package tcprelay

import (
	"io"
	"net"
	"sync"
	"time"
)

// Start relays every connection accepted on ln to target, each way until either side closes its half. stop
// closes ln and every connection, and returns once all of Start's goroutines have.
func Start(ln net.Listener, target string) (stop func()) {
	var (
		mu     sync.Mutex
		conns  []net.Conn
		copies sync.WaitGroup
	)
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			copies.Add(2)
			go pass(&copies, out, in)
			go pass(&copies, in, out)
		}
	}()
	return func() {
		_ = ln.Close()
		<-accepting
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		copies.Wait()
	}
}

// pass copies from src to dst, then closes dst's writing half so its reader sees the end.
func pass(wg *sync.WaitGroup, dst, src net.Conn) {
	defer wg.Done()
	_, _ = io.Copy(dst, src)
	if tcp, ok := dst.(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
	}
}
