package main

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
)

// otlpSink is an OTLP/HTTP logs receiver on loopback for the OpenTelemetry Collector's otlphttp exporter: it
// counts the log records of each export request and acknowledges it (200 with an empty
// ExportLogsServiceResponse) once counted, as a Collector's otlp receiver does. It decodes only the message
// nesting it needs (protowire), so the benchmark needs none of the Collector's modules.
type otlpSink struct {
	listener net.Listener
	server   *http.Server
	mu       sync.Mutex
	records  int
	bytes    int64 // request bodies as sent (compressed when the exporter compresses)
}

func listenOTLP() (*otlpSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &otlpSink{listener: l}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/logs", s.export)
	s.server = &http.Server{Handler: mux}
	go func() { _ = s.server.Serve(l) }()
	return s, nil
}

// URL is the exporter's endpoint.
func (s *otlpSink) URL() string { return "http://" + s.listener.Addr().String() }

func (s *otlpSink) Close() { _ = s.server.Close() }

// Counts are the records acknowledged so far and the request bytes that carried them.
func (s *otlpSink) Counts() (records int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records, s.bytes
}

func (s *otlpSink) export(w http.ResponseWriter, r *http.Request) {
	counted := &countingReader{r: r.Body}
	var body io.Reader = counted
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(counted)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	msg, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n, err := countLogRecords(msg)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.records += n
	s.bytes += counted.n
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK) // an empty ExportLogsServiceResponse is zero bytes
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// countLogRecords counts the LogRecords of an ExportLogsServiceRequest: resource_logs (1) → scope_logs (2)
// → log_records (2).
func countLogRecords(msg []byte) (int, error) {
	total := 0
	err := eachField(msg, 1, func(resourceLogs []byte) error {
		return eachField(resourceLogs, 2, func(scopeLogs []byte) error {
			return eachField(scopeLogs, 2, func([]byte) error { total++; return nil })
		})
	})
	return total, err
}

// eachField calls fn with the bytes of every length-delimited field numbered field in msg.
func eachField(msg []byte, field protowire.Number, fn func([]byte) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return fmt.Errorf("malformed OTLP message: %w", protowire.ParseError(n))
		}
		msg = msg[n:]
		if typ == protowire.BytesType && num == field {
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return fmt.Errorf("malformed OTLP message: %w", protowire.ParseError(n))
			}
			if err := fn(v); err != nil {
				return err
			}
			msg = msg[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, msg)
		if n < 0 {
			return errors.New("malformed OTLP message: a field's value")
		}
		msg = msg[n:]
	}
	return nil
}
