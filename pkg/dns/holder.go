package dns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/internal/dnsnet"
	"github.com/nodeagent/nodeagent/internal/unixsock"
)

// The socket holder keeps cluster DNS reachable while the agent restarts (a crash, an upgrade). It is a small
// process of its own (`nodeagent dns-socket-holder`), started by the agent on its own session so that it
// outlives it: it binds the DNS address once and hands duplicates of the UDP and TCP sockets to each agent
// that asks over a unix socket, and never reads from them. While no agent runs, the kernel keeps the queries
// that arrive in the UDP socket's buffer and the connections in the TCP backlog; the next agent answers them.
// A pod's resolver, which retries after its timeout, sees a slow answer instead of none.

// holderReadBuffer is the UDP socket's receive buffer: about 20,000 small queries, enough for a restart under
// load.
const holderReadBuffer = 8 << 20

// HeldSockets returns the sockets for addr from the holder listening on control, starting one with start
// when none answers. A holder that holds another address is told to exit and replaced.
func HeldSockets(ctx context.Context, addr, control string, start func() error) (net.PacketConn, net.Listener, error) {
	pc, l, held, err := askHolder(control, addr)
	if err == nil {
		return pc, l, nil
	}
	if held != "" {
		klog.InfoS("The DNS socket holder holds another address: replacing it", "holds", held, "want", addr)
	} else {
		klog.InfoS("Starting the DNS socket holder", "address", addr, "control", control, "reason", err)
	}
	if err := start(); err != nil {
		return nil, nil, fmt.Errorf("starting the DNS socket holder: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		pc, l, _, err := askHolder(control, addr)
		if err == nil {
			return pc, l, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("the DNS socket holder did not answer on %s: %w", control, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// askHolder asks the holder on control for its sockets. held is the address a holder holds when it is not
// addr; that holder is told to exit.
func askHolder(control, addr string) (pc net.PacketConn, l net.Listener, held string, err error) {
	conn, err := net.DialTimeout("unix", control, time.Second)
	if err != nil {
		return nil, nil, "", err
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(uc, "%s\n", addr); err != nil {
		return nil, nil, "", err
	}
	buf, oob := make([]byte, 512), make([]byte, unix.CmsgSpace(2*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, "", fmt.Errorf("reading the holder's answer: %w", err)
	}
	answer := strings.TrimSpace(string(buf[:n]))
	if answer != "ok "+addr {
		return nil, nil, strings.TrimPrefix(answer, "holds "), fmt.Errorf("the holder answered %q", answer)
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil || len(fds) != 2 {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
		return nil, nil, "", fmt.Errorf("the holder's sockets: %d descriptors (%v), want 2", len(fds), err)
	}
	udp, tcp := os.NewFile(uintptr(fds[0]), "dns-udp"), os.NewFile(uintptr(fds[1]), "dns-tcp")
	defer udp.Close() // FilePacketConn and FileListener hold duplicates
	defer tcp.Close()
	if pc, err = net.FilePacketConn(udp); err != nil {
		return nil, nil, "", err
	}
	if l, err = net.FileListener(tcp); err != nil {
		pc.Close()
		return nil, nil, "", err
	}
	return pc, l, "", nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		rights, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, err
		}
		fds = append(fds, rights...)
	}
	return fds, nil
}

// HoldSockets is the holder: it binds addr (UDP with a large receive buffer, and TCP) and answers each agent
// on control with duplicates of both, until ctx ends or an agent that wants another address asks.
func HoldSockets(ctx context.Context, addr, control string) error {
	pc, l, err := dnsnet.ListenUDPAndTCP(addr)
	if err != nil {
		return err
	}
	defer pc.Close()
	defer l.Close()
	udp, err := pc.(*net.UDPConn).File()
	if err != nil {
		return err
	}
	defer udp.Close()
	tcp, err := l.(*net.TCPListener).File()
	if err != nil {
		return err
	}
	defer tcp.Close()
	if err := unix.SetsockoptInt(int(udp.Fd()), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, holderReadBuffer); err != nil {
		klog.ErrorS(err, "Enlarging the DNS socket's receive buffer; the default one holds fewer queries")
	}
	ctl, err := unixsock.Listen(control, 0o700)
	if err != nil {
		return fmt.Errorf("DNS socket holder control %s: %w", control, err)
	}
	defer ctl.Close()
	stop := context.AfterFunc(ctx, func() { ctl.Close() })
	defer stop()
	klog.InfoS("Holding the DNS sockets for the agent", "address", addr, "control", control)
	rights := unix.UnixRights(int(udp.Fd()), int(tcp.Fd()))
	for {
		conn, err := ctl.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if exit := answer(conn.(*net.UnixConn), addr, rights); exit {
			// The agent starts the next holder as soon as it reads the answer, and that one binds the
			// same path: closing must not unlink the path from under it.
			ctl.(*net.UnixListener).SetUnlinkOnClose(false)
			return nil
		}
	}
}

// answer gives an agent the sockets when it wants addr, or says what is held and reports that the holder
// must exit, for the agent to start one for its address.
func answer(conn *net.UnixConn, addr string, rights []byte) (exit bool) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	want, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		klog.ErrorS(err, "Reading an agent's request")
		return false
	}
	if strings.TrimSpace(want) != addr {
		_, _ = conn.Write([]byte("holds " + addr + "\n"))
		klog.InfoS("An agent wants another address: exiting", "holds", addr, "wanted", strings.TrimSpace(want))
		return true
	}
	if _, _, err := conn.WriteMsgUnix([]byte("ok "+addr+"\n"), rights, nil); err != nil {
		klog.ErrorS(err, "Handing the DNS sockets to an agent")
	}
	return false
}

// HolderControl is the control socket of the holder of addr in the calling process's network namespace:
// one holder per address and namespace, whichever agent (and root directory) asks.
func HolderControl(addr string) (string, error) {
	prefix, err := holderPrefix()
	if err != nil {
		return "", err
	}
	return prefix + strings.NewReplacer(":", "_", "[", "", "]", "").Replace(addr) + ".sock", nil
}

// holderPrefix starts the control sockets of this network namespace's holders.
func holderPrefix() (string, error) {
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return "", fmt.Errorf("network namespace: %w", err)
	}
	return filepath.Join(HolderDir, "dns-"+strings.Trim(strings.TrimPrefix(ns, "net:"), "[]")+"-"), nil
}

// HolderDir holds the holders' control sockets.
const HolderDir = "/run/nodeagent"

// StopHolders tells the holders of this network namespace to exit (the node's cleanup).
func StopHolders() error {
	prefix, err := holderPrefix()
	if err != nil {
		return err
	}
	controls, err := filepath.Glob(prefix + "*.sock")
	if err != nil {
		return err
	}
	for _, control := range controls {
		StopHolder(control)
	}
	return nil
}

// StopHolder tells the holder on control to exit.
func StopHolder(control string) {
	// An address no holder holds: the holder answers what it holds and exits.
	if _, _, held, err := askHolder(control, "exit"); held == "" && err != nil {
		klog.V(2).InfoS("No DNS socket holder answered", "control", control, "err", err)
	}
	_ = os.Remove(control)
}

// StartHolder starts `exe dns-socket-holder` for addr in a session of its own (it must outlive the agent
// and any signal sent to the agent's process group), logging to logFile.
func StartHolder(exe, addr, control, logFile string) error {
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	proc, err := os.StartProcess(exe, []string{exe, "dns-socket-holder", addr, control},
		&os.ProcAttr{Files: []*os.File{nil, log, log}, Sys: &syscall.SysProcAttr{Setsid: true}})
	if err != nil {
		return err
	}
	return proc.Release()
}
