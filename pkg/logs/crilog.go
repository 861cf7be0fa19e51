// Package logs owns container log shipping: reading the CRI log files under the pod logs directory,
// turning their lines into records, and (as it grows) enriching them from the pod cache and sending them
// over the Fluentd forward protocol. It reads log files and never writes or rotates them: rotation belongs
// to the pod manager.
package logs

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Stream is the container output a line came from.
type Stream string

const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// Line is one line of a CRI log file: "<RFC 3339 nano time> <stream> <tag> <message>", where the tag's
// first field is P for a part of a longer line and F for a full line or the last part (the runtime splits
// lines longer than its buffer).
type Line struct {
	Time    time.Time
	Stream  Stream
	Partial bool
	Message []byte
}

var errMalformed = errors.New("not a CRI log line")

// ParseLine reads one CRI log line, without its trailing newline. Message shares raw's memory.
func ParseLine(raw []byte) (Line, error) {
	ts, rest, ok := bytes.Cut(raw, []byte{' '})
	if !ok {
		return Line{}, fmt.Errorf("%w: no stream", errMalformed)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Line{}, fmt.Errorf("%w: time %q", errMalformed, ts)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != string(Stdout) && string(stream) != string(Stderr)) {
		return Line{}, fmt.Errorf("%w: stream %q", errMalformed, stream)
	}
	// The message may be empty: "<time> stdout F" ends at the tag.
	tag, msg, _ := bytes.Cut(rest, []byte{' '})
	first, _, _ := bytes.Cut(tag, []byte{':'})
	var partial bool
	switch string(first) {
	case "P":
		partial = true
	case "F":
	default:
		return Line{}, fmt.Errorf("%w: tag %q", errMalformed, tag)
	}
	return Line{Time: t, Stream: Stream(stream), Partial: partial, Message: msg}, nil
}

// Record is a whole line of a container's output, its parts joined, or a line that was not CRI's, kept raw.
type Record struct {
	// Time is when the line (its first part) was written; for a malformed line, zero.
	Time      time.Time
	Stream    Stream
	Message   []byte
	Malformed bool
}

// Joiner joins the parts of long lines, each stream on its own (a container's stdout and stderr parts
// interleave in one file). It keeps everything: a line of any length comes out whole.
type Joiner struct {
	pending map[Stream]*Record
}

// NewJoiner returns a Joiner with nothing pending.
func NewJoiner() *Joiner { return &Joiner{pending: map[Stream]*Record{}} }

// Add takes the next line of a file and returns the record it completes, if any. A malformed line is
// returned at once, raw, marked Malformed. The record's Message is the caller's.
func (j *Joiner) Add(raw []byte) (Record, bool) {
	line, err := ParseLine(raw)
	if err != nil {
		return Record{Message: bytes.Clone(raw), Malformed: true}, true
	}
	rec := j.pending[line.Stream]
	if rec == nil {
		rec = &Record{Time: line.Time, Stream: line.Stream}
	}
	rec.Message = append(rec.Message, line.Message...)
	if line.Partial {
		j.pending[line.Stream] = rec
		return Record{}, false
	}
	delete(j.pending, line.Stream)
	return *rec, true
}

// Pending reports whether a stream has parts waiting for their last one: a file that ends so is not done
// (the rest follows in the next file after a rotation).
func (j *Joiner) Pending() bool { return len(j.pending) > 0 }
