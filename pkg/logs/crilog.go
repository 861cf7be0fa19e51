// Package logs owns container log shipping: reading the CRI log files under the pod logs directory,
// turning their lines into records, and (as it grows) enriching them from the pod cache and sending them
// over the Fluentd forward protocol. It reads log files and never writes or rotates them: rotation belongs
// to the pod manager.
package logs

import (
	"bytes"
	"encoding/binary"
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
func ParseLine(raw []byte) (Line, error) { return parseLine(raw, nil) }

// parseLine is ParseLine with the time's second looked up in seconds first, when given.
func parseLine(raw []byte, seconds *secondCache) (Line, error) {
	ts, rest, ok := cutByte(raw, ' ')
	if !ok {
		return Line{}, fmt.Errorf("%w: no stream", errMalformed)
	}
	t, ok := seconds.parse(ts)
	if !ok {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, string(ts)); err != nil {
			return Line{}, fmt.Errorf("%w: time %q", errMalformed, ts)
		}
	}
	// The stream and a one-letter tag are read in place: a search for each space cost more than the rest
	// of the line's parsing (bench logs, 200-byte lines).
	stream, ok := streamOf(rest)
	if !ok {
		streamText, _, _ := cutByte(rest, ' ')
		return Line{}, fmt.Errorf("%w: stream %q", errMalformed, streamText)
	}
	rest = rest[len(stream)+1:]
	// The message may be empty: "<time> stdout F" ends at the tag.
	var tag, msg []byte
	if len(rest) > 0 && rest[0] != ' ' && (len(rest) == 1 || rest[1] == ' ') {
		tag, msg = rest[:1], rest[min(2, len(rest)):]
	} else {
		tag, msg, _ = cutByte(rest, ' ')
	}
	first, _, _ := cutByte(tag, ':')
	var partial bool
	switch string(first) {
	case "P":
		partial = true
	case "F":
	default:
		return Line{}, fmt.Errorf("%w: tag %q", errMalformed, tag)
	}
	return Line{Time: t, Stream: stream, Partial: partial, Message: msg}, nil
}

// streamOf reads the stream a line's rest starts with, "stdout " or "stderr ".
func streamOf(rest []byte) (Stream, bool) {
	switch {
	case hasField(rest, string(Stdout)):
		return Stdout, true
	case hasField(rest, string(Stderr)):
		return Stderr, true
	}
	return "", false
}

// hasField reports whether s starts with field and a space.
func hasField(s []byte, field string) bool {
	return len(s) > len(field) && s[len(field)] == ' ' && string(s[:len(field)]) == field
}

// cutByte is bytes.Cut for a one-byte separator, without bytes.Index's general case: it runs four times a
// line.
func cutByte(s []byte, sep byte) (before, after []byte, found bool) {
	if i := bytes.IndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, nil, false
}

// secondCache remembers the second of the last UTC timestamp read, "2026-12-01T20:00:00", and its Unix
// time: lines come many to a second, and then only the fraction needs reading. A nil cache reads every
// timestamp whole.
type secondCache struct {
	// second is the remembered second's 19 bytes as three words (secondWords), compared with a line's in
	// three loads: it runs once per line, where comparing the bytes was a call.
	second [3]uint64
	unix   int64
	valid  bool
}

// secondWords are the first 19 bytes of b (it holds at least that many) as little-endian words: bytes 0-7,
// 8-15 and 15-18.
func secondWords(b []byte) [3]uint64 {
	return [3]uint64{binary.LittleEndian.Uint64(b[0:8]), binary.LittleEndian.Uint64(b[8:16]), uint64(binary.LittleEndian.Uint32(b[15:19]))}
}

// holds reports whether b, of 19 bytes or more, starts with the remembered second.
func (c *secondCache) holds(b []byte) bool {
	w := secondWords(b)
	return c.valid && w[0] == c.second[0] && w[1] == c.second[1] && w[2] == c.second[2]
}

// parse reads a timestamp as parseUTCTime does.
func (c *secondCache) parse(b []byte) (time.Time, bool) {
	if sec, nsec, ok := c.inSecond(b); ok {
		return time.Unix(sec, int64(nsec)).UTC(), true
	}
	t, ok := parseUTCTime(b)
	if ok && c != nil {
		c.second, c.unix, c.valid = secondWords(b), t.Unix(), true
	}
	return t, ok
}

// inSecond reads a UTC timestamp of the remembered second, "<second>Z" or "<second>.<fraction>Z", as Unix
// seconds and nanoseconds; ok is false for any other timestamp.
func (c *secondCache) inSecond(b []byte) (sec int64, nsec int, ok bool) {
	if c == nil || len(b) < 20 || b[len(b)-1] != 'Z' || !c.holds(b) {
		return 0, 0, false
	}
	nsec, ok = parseFraction(b[19 : len(b)-1])
	return c.unix, nsec, ok
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
	seconds secondCache
}

// NewJoiner returns a Joiner with nothing pending.
func NewJoiner() *Joiner { return &Joiner{pending: map[Stream]*Record{}} }

// Add takes the next line of a file and returns the record it completes, if any. A malformed line is
// returned at once, raw, marked Malformed. The record's Message may share raw's memory: use it before raw
// changes.
func (j *Joiner) Add(raw []byte) (Record, bool) {
	line, err := parseLine(raw, &j.seconds)
	if err != nil {
		return Record{Message: raw, Malformed: true}, true
	}
	rec := j.pending[line.Stream]
	if rec == nil {
		if !line.Partial { // a whole line, the usual case: no copy
			return Record{Time: line.Time, Stream: line.Stream, Message: line.Message}, true
		}
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

// wholeLine reads a line of the usual form without Add's copies: a full line ("F") whose time is in UTC
// and in the second of the line before (lines come many to a second), with no part of either stream
// pending. ok is false for any other line, which Add reads. The message shares raw's memory.
func (j *Joiner) wholeLine(raw []byte) (sec int64, nsec int, stream Stream, msg []byte, ok bool) {
	if len(j.pending) > 0 || len(raw) < 29 {
		return 0, 0, "", nil, false
	}
	z := 29 // where the runtimes' nine-digit fraction ends: no search for the usual line
	if len(raw) <= z || raw[z] != 'Z' {
		z = bytes.IndexByte(raw[19:min(len(raw), 30)], 'Z') + 19 // "" or "." and up to 9 digits, then Z
	}
	if z < 19 || z+1 == len(raw) || raw[z+1] != ' ' {
		return 0, 0, "", nil, false
	}
	if sec, nsec, ok = j.seconds.inSecond(raw[:z+1]); !ok {
		return 0, 0, "", nil, false
	}
	rest := raw[z+2:]
	if stream, ok = streamOf(rest); !ok {
		return 0, 0, "", nil, false
	}
	// "F" and a space before the message, or "F" ending the line (an empty message).
	switch rest = rest[len(stream)+1:]; {
	case len(rest) == 1 && rest[0] == 'F':
		return sec, nsec, stream, rest[1:], true
	case len(rest) >= 2 && rest[0] == 'F' && rest[1] == ' ':
		return sec, nsec, stream, rest[2:], true
	}
	return 0, 0, "", nil, false
}

// usualLineHead is the length of what comes before the message in the runtimes' usual line, a whole line
// of stdout or stderr written with a nine-digit fraction: "2026-12-01T20:45:19.123456789Z stdout F ".
const usualLineHead = 40

// usualLine reads a line of that usual shape, in the second the Joiner read last, with no part of a line
// pending; ok is false for any other line. It reads the fixed places only: no search, so that a follower
// can run it over every line its read buffer holds (chunkBuilder.addUsualLines). Every line it reads,
// wholeLine reads the same.
func (j *Joiner) usualLine(raw []byte) (nsec int, stream Stream, ok bool) {
	if len(raw) < usualLineHead || raw[29] != 'Z' || raw[19] != '.' || len(j.pending) > 0 || !j.seconds.holds(raw) {
		return 0, "", false
	}
	switch string(raw[30:usualLineHead]) {
	case " stdout F ":
		stream = Stdout
	case " stderr F ":
		stream = Stderr
	default:
		return 0, "", false
	}
	nsec, ok = nineDigits(raw[20:29])
	return nsec, stream, ok
}

// Pending reports whether a stream has parts waiting for their last one: a file that ends so is not done
// (the rest follows in the next file after a rotation).
func (j *Joiner) Pending() bool { return len(j.pending) > 0 }

// parseUTCTime reads the runtime's usual timestamp, RFC 3339 in UTC with 0 to 9 fraction digits
// ("2026-12-01T20:00:00.123456789Z"), without time.Parse's string copy: it runs once per line. ok is false
// for anything else (other zones, invalid dates), which time.Parse then reads or refuses.
func parseUTCTime(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || year < 1 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec, ok := parseFraction(b[19 : len(b)-1])
	if !ok {
		return time.Time{}, false
	}
	if day > daysIn(month, year) { // February 30th and the like
		return time.Time{}, false
	}
	secs := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+sec)
	return time.Unix(secs, int64(nsec)).UTC(), true
}

// parseFraction reads a timestamp's fraction of a second, "" or "." and 1 to 9 digits, as nanoseconds.
func parseFraction(frac []byte) (int, bool) {
	if len(frac) == 10 && frac[0] == '.' { // the runtimes' own format: always nine digits
		return nineDigits(frac[1:])
	}
	if len(frac) == 0 {
		return 0, true
	}
	if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
		return 0, false
	}
	n, ok := digits(frac[1:])
	for range 10 - len(frac) {
		n *= 10
	}
	return n, ok
}

// nineDigits reads nine decimal digits, the first eight at once as one little-endian word (SWAR): a line's
// fraction of a second, read one digit at a time, was a quarter of its timestamp's cost.
func nineDigits(s []byte) (int, bool) {
	w := binary.LittleEndian.Uint64(s[:8])
	// Each byte is a digit when its high half is 3 and adding 6 does not carry into the high half.
	if w&0xf0f0f0f0f0f0f0f0 != 0x3030303030303030 || (w+0x0606060606060606)&0xf0f0f0f0f0f0f0f0 != 0x3030303030303030 {
		return 0, false
	}
	last := s[8]
	if last < '0' || last > '9' {
		return 0, false
	}
	w -= 0x3030303030303030
	// The first digit is the lowest byte: combine pairs, then pairs of pairs, then the two halves.
	w = (w*10 + w>>8) & 0x00ff00ff00ff00ff
	w = (w*100 + w>>16) & 0x0000ffff0000ffff
	w = (w*10000 + w>>32) & 0xffffffff
	return int(w)*10 + int(last-'0'), true
}

// digits reads a run of decimal digits.
func digits(s []byte) (int, bool) {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// daysSinceEpoch is the number of days from 1970-01-01 to a date of the proleptic Gregorian calendar
// (Howard Hinnant's days_from_civil): plain arithmetic, several times cheaper than time.Date, which
// normalises its fields and looks up the zone.
func daysSinceEpoch(year, month, day int) int64 {
	if month <= 2 {
		year--
	}
	era := year / 400 // years here are 0 to 9999, so no negative division
	yoe := year - era*400
	mp := (month + 9) % 12 // March is 0
	doy := (153*mp+2)/5 + day - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era*146097 + doe - 719468)
}

// daysIn is the number of days of a month of the Gregorian calendar.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
