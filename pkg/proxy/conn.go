package proxy

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// netlinkBufferBytes bounds the netlink socket's buffers. google/nftables asks the kernel to acknowledge
// every message of a transaction, and the kernel queues all those acknowledgements while it applies the
// batch: a full sync of thousands of Services overflows the default 208 KiB receive buffer (ENOBUFS) and, as
// one message, the send buffer. nft(8) raises both for the same reason (libnftables' mnl_set_rcvbuffer and
// mnl_set_sndbuffer). The figure is a limit, not an allocation: memory is used only while
// acknowledgements wait to be read.
const netlinkBufferBytes = 512 << 20

// NewConn opens the proxy's nftables connection (opts add to it, e.g. a network namespace), with socket
// buffers large enough for a transaction that rewrites the whole table.
func NewConn(opts ...nftables.ConnOption) (*nftables.Conn, error) {
	opts = append(opts, nftables.WithSockOptions(raiseBuffers))
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to nftables: %w", err)
	}
	return conn, nil
}

// raiseBuffers sets the socket's buffers past the system's maximum (rmem_max, wmem_max), which needs
// CAP_NET_ADMIN: the proxy has it, as it writes nftables.
func raiseBuffers(c *netlink.Conn) error {
	// The kernel then says which attribute it refused, and why, in errors.
	if err := c.SetOption(netlink.ExtendedAcknowledge, true); err != nil {
		return fmt.Errorf("netlink extended acknowledgements: %w", err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_RCVBUFFORCE, unix.SO_SNDBUFFORCE} {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, netlinkBufferBytes); err != nil {
				sockErr = fmt.Errorf("raising the netlink socket's buffers: %w", err)
				return
			}
		}
	}); err != nil {
		return err
	}
	return sockErr
}
