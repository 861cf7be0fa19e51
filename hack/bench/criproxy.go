package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// criProxy sits between a node agent and the runtime on a unix socket of its own and counts the CRI calls
// that pass, by method: it forwards every gRPC stream as raw bytes, so it needs no knowledge of the API and
// adds the same cost to any peer it is put in front of.
type criProxy struct {
	server *grpc.Server
	conn   *grpc.ClientConn
	done   chan struct{}

	mu    sync.Mutex
	calls map[string]int64
}

// rawCodec passes messages through as bytes. Its name is "proto" so both ends keep the content type.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

const proxyMaxMessage = 64 << 20

// startCRIProxy listens on socketPath and forwards to the runtime at endpoint (unix://...).
func startCRIProxy(socketPath, endpoint string) (*criProxy, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(proxyMaxMessage)))
	if err != nil {
		return nil, fmt.Errorf("CRI proxy: dialing %s: %w", endpoint, err)
	}
	_ = os.Remove(socketPath)
	lis, err := net.Listen("unix", socketPath)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("CRI proxy: %w", err)
	}
	p := &criProxy{conn: conn, calls: map[string]int64{}, done: make(chan struct{})}
	p.server = grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.MaxRecvMsgSize(proxyMaxMessage),
		grpc.UnknownServiceHandler(p.forward))
	go func() { defer close(p.done); _ = p.server.Serve(lis) }()
	return p, nil
}

// forward relays one call: the caller's messages to the runtime, the runtime's back, then its status.
func (p *criProxy) forward(_ any, in grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(in)
	if !ok {
		return errors.New("no method")
	}
	p.mu.Lock()
	p.calls[method]++
	p.mu.Unlock()
	ctx, cancel := context.WithCancel(in.Context())
	defer cancel()
	out, err := p.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	go func() {
		for {
			var msg []byte
			if err := in.RecvMsg(&msg); err != nil {
				_ = out.CloseSend()
				return
			}
			if err := out.SendMsg(&msg); err != nil {
				return
			}
		}
	}()
	for {
		var msg []byte
		if err := out.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return status.Convert(err).Err()
		}
		if err := in.SendMsg(&msg); err != nil {
			return err
		}
	}
}

// take returns the calls counted since the last take, by method, and starts counting afresh.
func (p *criProxy) take() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	calls := p.calls
	p.calls = map[string]int64{}
	return calls
}

func (p *criProxy) stop() {
	p.server.Stop()
	<-p.done
	p.conn.Close()
}

// summarizeCalls is the total and the methods by count, short names ("ListContainers: 12").
func summarizeCalls(calls map[string]int64) (total int64, top []string) {
	type count struct {
		method string
		n      int64
	}
	var counts []count
	for m, n := range calls {
		total += n
		counts = append(counts, count{m[strings.LastIndexByte(m, '/')+1:], n})
	}
	sort.Slice(counts, func(i, j int) bool { return counts[i].n > counts[j].n })
	for _, c := range counts {
		top = append(top, fmt.Sprintf("%s %d", c.method, c.n))
	}
	return total, top
}
