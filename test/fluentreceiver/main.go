// Command fluentreceiver runs the OpenTelemetry Collector's fluentforward receiver, a Fluentd forward
// protocol server the project did not write, on a loopback address, and appends every log record it
// accepts to a file as one JSON object per line: {"time": unix nanoseconds, "body": ..., "attributes": {...}}.
// It acknowledges a chunk only after the record is written. Tests of pkg/logs run it as their receiver.
//
//	go run ./test/fluentreceiver --listen 127.0.0.1:24224 --out /tmp/records.jsonl
//
// It lives in a module of its own so the collector's dependencies stay out of nodeagent's.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/fluentforwardreceiver"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receivertest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:24224", "TCP address to listen on (loopback)")
	out := flag.String("out", "", "file the records are appended to")
	flag.Parse()
	if err := run(*listen, *out); err != nil {
		fmt.Fprintln(os.Stderr, "fluentreceiver:", err)
		os.Exit(1)
	}
}

func run(listen, out string) error {
	file, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer file.Close()
	var mu sync.Mutex
	enc := json.NewEncoder(file)
	sink, err := consumer.NewLogs(func(_ context.Context, logs plog.Logs) error {
		mu.Lock()
		defer mu.Unlock()
		for i := range logs.ResourceLogs().Len() {
			scopes := logs.ResourceLogs().At(i).ScopeLogs()
			for j := range scopes.Len() {
				records := scopes.At(j).LogRecords()
				for k := range records.Len() {
					r := records.At(k)
					line := map[string]any{"time": r.Timestamp(), "body": r.Body().AsRaw(), "attributes": r.Attributes().AsRaw()}
					if err := enc.Encode(line); err != nil {
						return err
					}
				}
			}
		}
		return file.Sync()
	})
	if err != nil {
		return err
	}
	factory := fluentforwardreceiver.NewFactory()
	cfg := factory.CreateDefaultConfig().(*fluentforwardreceiver.Config)
	cfg.ListenAddress = listen
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	recv, err := factory.CreateLogs(ctx, receivertest.NewNopSettings(factory.Type()), cfg, sink)
	if err != nil {
		return err
	}
	if err := recv.Start(ctx, componenttest.NewNopHost()); err != nil {
		return err
	}
	fmt.Println("listening on", listen)
	<-ctx.Done()
	return recv.Shutdown(context.Background())
}
