package dns

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// A query sent while no agent runs waits in the held socket and is answered by the next agent; a holder of
// another address steps aside for a new one.
func TestTheHolderKeepsQueriesForTheNextAgent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	control := filepath.Join(t.TempDir(), "holder.sock")
	addr := "127.0.0.1:0" // the kernel picks the port; agents ask for the address as configured
	holderDone := make(chan error, 1)
	starts := 0
	start := func() error {
		starts++
		go func() { holderDone <- HoldSockets(ctx, addr, control) }()
		return nil
	}

	pc1, l1, err := HeldSockets(ctx, addr, control, start)
	if err != nil {
		t.Fatal(err)
	}
	l1.Close()
	served := pc1.LocalAddr().String()
	client, err := net.Dial("udp", served)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// The first agent stops (crashes) with a query unread: the holder still has the socket.
	pc1.Close()
	if _, err := client.Write([]byte("asked while no agent runs")); err != nil {
		t.Fatal(err)
	}

	pc2, l2, err := HeldSockets(ctx, addr, control, start)
	if err != nil {
		t.Fatal(err)
	}
	defer pc2.Close()
	defer l2.Close()
	if starts != 1 {
		t.Errorf("the second agent started a holder again (%d starts), want it to find the first", starts)
	}
	if pc2.LocalAddr().String() != served {
		t.Errorf("the second agent serves %s, want the same socket %s", pc2.LocalAddr(), served)
	}
	buf := make([]byte, 100)
	_ = pc2.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := pc2.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "asked while no agent runs" {
		t.Fatalf("the second agent read %q (%v), want the query sent while no agent ran", buf[:n], err)
	}
	if _, err := pc2.WriteTo([]byte("answer"), from); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(buf); err != nil || string(buf[:n]) != "answer" {
		t.Errorf("the client got %q (%v), want the late answer", buf[:n], err)
	}

	// An agent configured for another address: the holder exits and a new one is started.
	pc3, l3, err := HeldSockets(ctx, "127.0.0.2:0", control, func() error {
		starts++
		go func() { holderDone <- HoldSockets(ctx, "127.0.0.2:0", control) }()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pc3.Close()
	l3.Close()
	if err := <-holderDone; err != nil {
		t.Errorf("the first holder ended with %v", err)
	}
	if starts != 2 {
		t.Errorf("%d holders started, want 2", starts)
	}
}
