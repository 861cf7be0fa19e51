package logs

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// dialLoopback connects to a listener of the test's on loopback with small socket buffers, so that a
// few megabytes fill them; serve gets the accepted connection.
func dialLoopback(t *testing.T, serve func(net.Conn)) *net.TCPConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.(*net.TCPConn).SetReadBuffer(64 << 10)
		serve(conn)
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); <-done })
	tcp := conn.(*net.TCPConn)
	tcp.SetWriteBuffer(64 << 10)
	return tcp
}

// Messages much larger than the socket's buffers, to a receiver that starts reading late, arrive whole and
// in order: each write that finds the socket full waits for room and goes on where it stopped.
func TestWritesArriveWholeAndInOrderThroughAFullSocket(t *testing.T) {
	big := make([]byte, 16<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	bufs := [][]byte{[]byte("head"), big, nil, []byte("tail")}
	want := bytes.Join(bufs, nil)
	got := make(chan []byte, 1)
	conn := dialLoopback(t, func(c net.Conn) {
		time.Sleep(100 * time.Millisecond) // the writer fills the socket meanwhile
		data, _ := io.ReadAll(c)
		got <- data
	})
	conn.SetWriteDeadline(time.Now().Add(time.Minute))
	if err := writeBuffers(conn, bufs); err != nil {
		t.Fatal(err)
	}
	conn.CloseWrite()
	if data := <-got; !bytes.Equal(data, want) {
		t.Fatalf("the receiver got %d bytes, not the %d written in order", len(data), len(want))
	}
}

// A receiver that stops reading does not hold the sender forever: the write ends at its deadline.
func TestAWriteToAReceiverThatDoesNotReadEndsAtItsDeadline(t *testing.T) {
	stop := make(chan struct{})
	conn := dialLoopback(t, func(net.Conn) { <-stop })
	defer close(stop)
	conn.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	err := writeBuffers(conn, [][]byte{make([]byte, 16<<20)})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writing to a receiver that does not read: %v, want the deadline exceeded", err)
	}
}
