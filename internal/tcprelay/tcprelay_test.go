package tcprelay

import (
	"bufio"
	"fmt"
	"net"
	"testing"
)

// A line written through the relay reaches the server, and the server's answer and its end of the stream
// come back; after stop the relay's address refuses.
func TestRelayPassesBothWaysAndStops(t *testing.T) {
	server, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	go func() {
		for {
			c, err := server.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			_, _ = fmt.Fprintf(c, "echo %s", line)
			_ = c.Close()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := Start(ln, server.Addr().String())
	for i := range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fmt.Fprintf(c, "hello %d\n", i)
		answer, err := bufio.NewReader(c).ReadString('\n')
		_ = c.Close()
		if want := fmt.Sprintf("echo hello %d\n", i); err != nil || answer != want {
			t.Fatalf("answer %q (%v), want %q", answer, err, want)
		}
	}
	stop()
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		_ = c.Close()
		t.Error("the relay's address still accepts after stop")
	}
}
