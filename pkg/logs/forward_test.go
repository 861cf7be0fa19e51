package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/testutil"
	"github.com/tinylib/msgp/msgp"
)

// The receiver is the OpenTelemetry Collector's fluentforward receiver (test/fluentreceiver), built once.
var (
	receiverOnce sync.Once
	receiverBin  string
	receiverErr  error
)

// startReceiver runs the receiver on addr, writing to out, until the test ends.
func startReceiver(t *testing.T, addr, out string) *testutil.FluentReceiver {
	t.Helper()
	receiverOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fluentreceiver")
		if err != nil {
			receiverErr = err
			return
		}
		receiverBin = filepath.Join(dir, "fluentreceiver")
		receiverErr = testutil.BuildFluentReceiver("../..", receiverBin)
	})
	if receiverErr != nil {
		t.Fatal(receiverErr)
	}
	r, err := testutil.StartFluentReceiver(receiverBin, addr, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// received reads what the receiver wrote: one JSON object per record.
func received(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	scanner := bufio.NewScanner(f)
	scanner.Buffer(nil, 4<<20)
	for scanner.Scan() {
		var rec map[string]any
		dec := json.NewDecoder(bytes.NewReader(scanner.Bytes()))
		dec.UseNumber() // nanosecond times do not fit a float64
		if err := dec.Decode(&rec); err != nil {
			t.Fatalf("receiver output %q: %v", scanner.Text(), err)
		}
		out = append(out, rec)
	}
	return out
}

// message encodes records "line <from>".."line <from+n-1>" of pod web-0 as the shipper does.
func message(t *testing.T, tag string, from, n int, compress bool) Message {
	t.Helper()
	meta, err := msgp.AppendIntf(nil, map[string]any{"pod_name": "web-0"})
	if err != nil {
		t.Fatal(err)
	}
	b := &chunkBuilder{}
	b.setContainer(meta, tag)
	for i := from; i < from+n; i++ {
		b.add(Record{Time: time.Unix(1764621919, int64(i)), Stream: Stdout, Message: []byte(fmt.Sprintf("line %d", i))})
	}
	m, err := b.message(compress)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sendAll writes msgs and waits for their acks, batch after batch (one message a batch to a receiver that
// does not keep connections).
func sendAll(c *ForwardClient, msgs []Message) error {
	for len(msgs) > 0 {
		n, err := c.Write(context.Background(), msgs)
		if err != nil {
			return err
		}
		if err := c.Wait(context.Background(), n); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// checkLines fails unless the receiver holds exactly "line 0".."line n-1", in order.
func checkLines(t *testing.T, out string, n int) []map[string]any {
	t.Helper()
	got := received(t, out)
	if len(got) != n {
		t.Fatalf("%d records received, want %d", len(got), n)
	}
	for i, rec := range got {
		if rec["body"] != fmt.Sprintf("line %d", i) {
			t.Fatalf("record %d is %v", i, rec["body"])
		}
	}
	return got
}

func TestForwardClientDeliversAcknowledgedChunksToAFluentForwardReceiver(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", compressed), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "records.jsonl")
			r := startReceiver(t, freeLoopbackAddr(t), out)
			c := &ForwardClient{Receivers: []string{r.Addr}, Timeout: 5 * time.Second}
			defer c.Close()
			tag := "kube.var.log.containers.web-0"
			// One message, then three written together and acknowledged in order.
			if err := sendAll(c, []Message{message(t, tag, 0, 100, compressed)}); err != nil {
				t.Fatal(err)
			}
			batch := []Message{message(t, tag, 100, 100, compressed), message(t, tag, 200, 100, compressed), message(t, tag, 300, 100, compressed)}
			if err := sendAll(c, batch); err != nil {
				t.Fatal(err)
			}
			got := checkLines(t, out, 400) // every chunk was acknowledged, so it is in the file
			for i, rec := range got {
				attrs, _ := rec["attributes"].(map[string]any)
				if attrs["fluent.tag"] != tag || attrs["stream"] != "stdout" ||
					rec["time"] != json.Number(strconv.FormatInt(time.Unix(1764621919, int64(i)).UnixNano(), 10)) {
					t.Fatalf("record %d: %v", i, rec)
				}
			}
		})
	}
}

// The shipper writes the next messages before it reads the acks of those it wrote last: the acks come back
// in order, each for its own message, and the receiver gets every record once.
func TestForwardClientWritesTheNextMessagesBeforeReadingTheAcks(t *testing.T) {
	out := filepath.Join(t.TempDir(), "records.jsonl")
	r := startReceiver(t, freeLoopbackAddr(t), out)
	c := &ForwardClient{Receivers: []string{r.Addr}, Timeout: 5 * time.Second}
	defer c.Close()
	ctx := context.Background()
	waiting := 0
	for i, batch := range [][]Message{
		{message(t, "t", 0, 10, false), message(t, "t", 10, 10, true)},
		{message(t, "t", 20, 10, false)},
		{message(t, "t", 30, 10, true), message(t, "t", 40, 10, false)},
	} {
		n, err := c.Write(ctx, batch)
		if err != nil || n != len(batch) {
			t.Fatalf("batch %d: %d of %d written: %v", i, n, len(batch), err)
		}
		if err := c.Wait(ctx, waiting); err != nil {
			t.Fatalf("the acks of the batch before batch %d: %v", i, err)
		}
		waiting = n
	}
	if err := c.Wait(ctx, waiting); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, 1); err == nil {
		t.Fatal("waited for an ack with every message acknowledged")
	}
	checkLines(t, out, 50)
}

// While the receiver is down, sending fails and says so; sent again once it is back, nothing is lost.
func TestForwardClientLosesNothingWhenTheReceiverRestarts(t *testing.T) {
	out := filepath.Join(t.TempDir(), "records.jsonl")
	addr := freeLoopbackAddr(t)
	r := startReceiver(t, addr, out)
	c := &ForwardClient{Receivers: []string{addr}, Timeout: 2 * time.Second}
	defer c.Close()
	if err := sendAll(c, []Message{message(t, "t", 0, 10, false)}); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if err := sendAll(c, []Message{message(t, "t", 10, 10, false)}); err == nil {
		t.Fatal("sending succeeded with the receiver down")
	}
	startReceiver(t, addr, out)
	if err := sendAll(c, []Message{message(t, "t", 10, 10, false)}); err != nil {
		t.Fatalf("sending again after the receiver came back: %v", err)
	}
	checkLines(t, out, 20)
}

// With two receivers, the second takes over when the first stops, and nothing is lost.
func TestForwardClientFailsOverToTheNextReceiver(t *testing.T) {
	first, second := filepath.Join(t.TempDir(), "first.jsonl"), filepath.Join(t.TempDir(), "second.jsonl")
	r1 := startReceiver(t, freeLoopbackAddr(t), first)
	r2 := startReceiver(t, freeLoopbackAddr(t), second)
	c := &ForwardClient{Receivers: []string{r1.Addr, r2.Addr}, Timeout: 2 * time.Second}
	defer c.Close()
	if err := sendAll(c, []Message{message(t, "t", 0, 10, false)}); err != nil {
		t.Fatal(err)
	}
	r1.Stop()
	var err error
	for attempt := 0; attempt < 2; attempt++ { // the first attempt may fail on the broken connection
		if err = sendAll(c, []Message{message(t, "t", 10, 10, false)}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no failover: %v", err)
	}
	checkLines(t, first, 10)
	got := received(t, second)
	if len(got) != 10 || got[0]["body"] != "line 10" {
		t.Fatalf("the second receiver got %d records: %v", len(got), got)
	}
}
