package logs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/test/forwardspec"
	"github.com/tinylib/msgp/msgp"
)

// BenchmarkReadJoinEncode measures a follower's work per byte of log: tail the file, parse and join CRI
// lines, encode records into chunks (b.SetBytes makes `go test -bench` report MB/s).
func BenchmarkReadJoinEncode(b *testing.B) {
	path := filepath.Join(b.TempDir(), "0.log")
	var sb strings.Builder
	for n := 0; sb.Len() < 16<<20; n++ {
		head := fmt.Sprintf("2026-12-01T20:00:00.%09dZ stdout F level=info request=%d msg=", n, n)
		sb.WriteString(head + strings.Repeat("x", 200-len(head)-1) + "\n")
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	// The metadata of the benchmark's containers (hack/bench logs: what the path says), 117 bytes a record.
	meta, err := msgp.AppendIntf(nil, map[string]any{"namespace_name": "bench", "pod_name": "app-0",
		"pod_id": "00000000-0000-4000-8000-000000000000", "container_name": "app", "host": "bench-node"})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		tl, err := OpenTailer(path, Position{}, NewReadBuffers())
		if err != nil {
			b.Fatal(err)
		}
		joiner := NewJoiner()
		chunk := &chunkBuilder{capacity: 1<<20 + 16<<10}
		chunk.setContainer(meta, "")
		chunk.useStage(make([]byte, 0, stageBytes)) // as a follower holding a parsing token
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		for {
			line, _, err := nextLine(ctx, tl)
			if err != nil {
				break
			}
			if sec, nsec, stream, msg, ok := joiner.wholeLine(line); ok {
				chunk.addLine(sec, nsec, stream, msg, true)
			} else if rec, ok := joiner.Add(line); ok {
				chunk.add(rec)
			}
			if !joiner.Pending() { // then the usual lines buffered after it, as a follower takes them
				if n := chunk.addUsualLines(joiner, tl.buffered(), 100_000, 1<<20); n > 0 {
					tl.consume(n)
				}
			}
			if chunk.size() >= 1<<20 {
				m, err := chunk.message(false)
				if err != nil {
					b.Fatal(err)
				}
				chunk.entries = m.Entries[:0] // as the buffer gives it back once acknowledged
			}
		}
		cancel()
		tl.Close()
	}
}

// BenchmarkShipperToAcknowledgedReceipt measures the whole shipper, files to acknowledged receipt by a
// forward receiver on loopback (test/forwardspec, which only counts), in MB/s of log files.
func BenchmarkShipperToAcknowledgedReceipt(b *testing.B) {
	logsDir := b.TempDir()
	var total int64
	lines := 0
	for c := range 4 {
		path := filepath.Join(logsDir, fmt.Sprintf("bench_app-%d_%08d-0000-4000-8000-000000000000", c, c), "app", "0.log")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			b.Fatal(err)
		}
		var sb strings.Builder
		for n := 0; sb.Len() < 16<<20; n++ {
			head := fmt.Sprintf("2026-12-01T20:00:00.%09dZ stdout F level=info request=%d msg=", n, n)
			sb.WriteString(head + strings.Repeat("x", 200-len(head)-1) + "\n")
			lines++
		}
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(sb.Len())
	}
	b.SetBytes(total)
	for b.Loop() {
		sink, err := forwardspec.Listen("127.0.0.1:0", forwardspec.Config{})
		if err != nil {
			b.Fatal(err)
		}
		cfg := testShipperConfig(logsDir, b.TempDir(), sink.Addr())
		cfg.ChunkRecords, cfg.FlushInterval, cfg.InFlight, cfg.Poll = 100_000, 50*time.Millisecond, 8, 10*time.Millisecond
		s, err := NewShipper(cfg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		for {
			if n, _ := sink.Counts(); n >= lines {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		<-done
		sink.Close()
	}
}
