package logs

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseLineReadsTheRuntimesFormat(t *testing.T) {
	for _, c := range []struct {
		raw     string
		want    Line
		wantErr bool
	}{
		{raw: "2026-12-01T20:45:19.123456789Z stdout F hello world",
			want: Line{Time: time.Date(2026, 12, 1, 20, 45, 19, 123456789, time.UTC), Stream: Stdout, Message: []byte("hello world")}},
		{raw: "2026-12-01T20:45:19.5+01:00 stderr P part one ",
			want: Line{Time: time.Date(2026, 12, 1, 19, 45, 19, 500000000, time.UTC), Stream: Stderr, Partial: true, Message: []byte("part one ")}},
		{raw: "2026-12-01T20:45:19Z stdout F", want: Line{Time: time.Date(2026, 12, 1, 20, 45, 19, 0, time.UTC), Stream: Stdout}},
		{raw: "2026-12-01T20:45:19Z stdout F:x tagged", want: Line{Time: time.Date(2026, 12, 1, 20, 45, 19, 0, time.UTC), Stream: Stdout, Message: []byte("tagged")}},
		{raw: "not a time stdout F x", wantErr: true},
		{raw: "2026-12-01T20:45:19Z stdin F x", wantErr: true},
		{raw: "2026-12-01T20:45:19Z stdout X x", wantErr: true},
		{raw: "2026-12-01T20:45:19Z", wantErr: true},
		{raw: "", wantErr: true},
	} {
		got, err := ParseLine([]byte(c.raw))
		if (err != nil) != c.wantErr {
			t.Errorf("%q: error %v, want error %v", c.raw, err, c.wantErr)
			continue
		}
		if !c.wantErr && (!got.Time.Equal(c.want.Time) || got.Stream != c.want.Stream || got.Partial != c.want.Partial ||
			!bytes.Equal(got.Message, c.want.Message)) {
			t.Errorf("%q:\n got %+v\nwant %+v", c.raw, got, c.want)
		}
	}
}

func TestJoinerJoinsPartsPerStreamWhateverTheirLength(t *testing.T) {
	j := NewJoiner()
	ts := "2026-12-01T20:45:19.000000001Z"
	big := strings.Repeat("x", 16*1024)
	var out []Record
	add := func(s string) {
		if r, ok := j.Add([]byte(s)); ok {
			out = append(out, r)
		}
	}
	// A 1 MiB + 5 byte line on stdout in 16 KiB parts, with a stderr line and a stderr part in between.
	for i := range 64 {
		add(ts + " stdout P " + big)
		if i == 10 {
			add(ts + " stderr F interleaved")
		}
		if i == 20 {
			add("2026-12-01T20:45:20Z stderr P second ")
		}
	}
	if !j.Pending() {
		t.Error("parts waiting, Pending says none")
	}
	add("2026-12-01T20:45:21Z stdout F tail!")
	add("2026-12-01T20:45:22Z stderr F half")
	add("garbage without a time")
	if j.Pending() {
		t.Error("every line ended, Pending says some wait")
	}
	if len(out) != 4 {
		t.Fatalf("%d records, want 4", len(out))
	}
	if string(out[0].Message) != "interleaved" || out[0].Stream != Stderr {
		t.Errorf("first record %q on %s", out[0].Message, out[0].Stream)
	}
	if len(out[1].Message) != 64*len(big)+5 || !bytes.HasSuffix(out[1].Message, []byte("xtail!")) || out[1].Stream != Stdout {
		t.Errorf("the long line: %d bytes on %s, want %d", len(out[1].Message), out[1].Stream, 64*len(big)+5)
	}
	if !out[1].Time.Equal(time.Date(2026, 12, 1, 20, 45, 19, 1, time.UTC)) {
		t.Errorf("the long line's time %v, want its first part's", out[1].Time)
	}
	if string(out[2].Message) != "second half" {
		t.Errorf("stderr's joined line %q", out[2].Message)
	}
	if !out[3].Malformed || string(out[3].Message) != "garbage without a time" {
		t.Errorf("malformed line: %+v, want it raw and marked", out[3])
	}
}

// FuzzJoiner feeds arbitrary lines: nothing panics, a line that parses reads the same once written out again,
// and what comes out of stdout is exactly the messages that went in, in order.
func FuzzJoiner(f *testing.F) {
	for _, s := range []string{
		"2026-12-01T20:45:19.123456789Z stdout F hello", "2026-12-01T20:45:19Z stderr P a",
		"2026-12-01T20:45:19Z stdout F", "2026-12-01T20:45:19+02:00 stdout F:x y", "x", "",
	} {
		f.Add([]byte(s), []byte("2026-12-01T20:45:20Z stdout F end"))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		j := NewJoiner()
		var in, out bytes.Buffer
		for _, raw := range [][]byte{a, b} {
			if l, err := ParseLine(raw); err == nil {
				if l.Stream == Stdout {
					in.Write(l.Message)
				}
				tag := "F"
				if l.Partial {
					tag = "P"
				}
				again, err := ParseLine(fmt.Appendf(nil, "%s %s %s %s", l.Time.Format(time.RFC3339Nano), l.Stream, tag, l.Message))
				if err != nil || !again.Time.Equal(l.Time) || again.Stream != l.Stream || again.Partial != l.Partial ||
					!bytes.Equal(again.Message, l.Message) {
					t.Fatalf("%q read as %+v, which written out reads as %+v (%v)", raw, l, again, err)
				}
			}
			if r, ok := j.Add(raw); ok && !r.Malformed && r.Stream == Stdout {
				out.Write(r.Message)
			}
		}
		if !j.Pending() && !bytes.Equal(in.Bytes(), out.Bytes()) {
			t.Fatalf("stdout in %q, out %q", in.Bytes(), out.Bytes())
		}
	})
}

// The fast timestamp reader agrees with time.Parse wherever it answers, and leaves the rest to it.
func TestParseUTCTimeAgreesWithTimeParse(t *testing.T) {
	for i, s := range []string{
		"2026-12-01T20:00:00Z", "2026-12-01T20:00:00.1Z", "2026-12-01T20:00:00.123456789Z", "2024-02-29T23:59:59.000000001Z",
		// From here on the fast reader steps aside.
		"2026-12-01T20:00:00.1234567890Z", "2026-02-30T20:00:00Z", "2026-12-01T20:00:00+01:00", "2026-12-01T24:00:00Z",
		"2026-12-01T20:00:00.Z", "2026-13-01T20:00:00Z", "2026-12-01 20:00:00Z", "2026-12-01T20:0a:00Z",
		"2100-02-29T00:00:00Z", "0000-01-01T00:00:00Z", "2026-04-31T00:00:00Z",
	} {
		want, wantErr := time.Parse(time.RFC3339Nano, s)
		got, ok := parseUTCTime([]byte(s))
		if ok && (wantErr != nil || !got.Equal(want)) {
			t.Errorf("%s: fast %v, time.Parse %v %v", s, got, want, wantErr)
		}
		if !ok && i < 4 {
			t.Errorf("%s: the fast reader refused the runtime's usual format", s)
		}
	}
}

// TestParseUTCTimeAgreesWithTimeParseOnEveryDay checks the fast reader's calendar arithmetic day by day
// over three centuries and more, leap years and century years included.
func TestParseUTCTimeAgreesWithTimeParseOnEveryDay(t *testing.T) {
	for day := time.Date(1899, 12, 25, 23, 59, 58, 5, time.UTC); day.Year() < 2201; day = day.AddDate(0, 0, 1) {
		s := day.Format(time.RFC3339Nano)
		got, ok := parseUTCTime([]byte(s))
		if !ok || !got.Equal(day) || got.Location() != time.UTC {
			t.Fatalf("%s: fast reader %v %v", s, got, ok)
		}
	}
}

// A Joiner reads a line's time from the second of the line before when they share it; every time must
// still be what ParseLine reads, across seconds, days, zones and broken fractions.
func TestJoinerTimesAgreeWithParseLine(t *testing.T) {
	j := NewJoiner()
	for _, ts := range []string{
		"2026-12-01T20:00:00.1Z", "2026-12-01T20:00:00.123456789Z", "2026-12-01T20:00:00Z", "2026-12-01T20:00:01.5Z",
		"2026-12-02T20:00:01.5Z", "2026-12-02T20:00:01.5+01:00", "2026-12-02T20:00:01.5Z", "2026-12-02T20:00:01.1234567890Z",
		"2026-12-02T20:00:01.Z", "2026-12-02T20:00:01.9Z", "2026-12-02T20:00:01x9Z",
	} {
		raw := []byte(ts + " stdout F line")
		want, wantErr := ParseLine(raw)
		rec, ok := j.Add(raw)
		if !ok {
			t.Fatalf("%s: no record", ts)
		}
		if rec.Malformed != (wantErr != nil) || !rec.Time.Equal(want.Time) {
			t.Errorf("%s: joiner read %v (malformed %v), ParseLine %v (%v)", ts, rec.Time, rec.Malformed, want.Time, wantErr)
		}
	}
}

// The follower reads most lines with wholeLine and the rest with Add: together they give the records Add
// alone gives, whatever the lines (other seconds and zones, tags with attributes, parts, malformed lines).
func TestWholeLineAndAddGiveWhatAddGives(t *testing.T) {
	lines := []string{
		"2026-12-01T20:45:19.123456789Z stdout F first",
		"2026-12-01T20:45:19.5Z stderr F same second",
		"2026-12-01T20:45:19Z stdout F",
		"2026-12-01T20:45:19Z stdout F ",
		"2026-12-01T20:45:19.000000001Z stdout F:x tagged",
		"2026-12-01T20:45:19.1Z stdout P part one, ",
		"2026-12-01T20:45:19.2Z stderr F while stdout has a part pending",
		"2026-12-01T20:45:19.3Z stdout F part two",
		"2026-12-01T20:45:19.4Z stdout F after the parts",
		"2026-12-01T20:45:20.4Z stdout F the next second",
		"2026-12-01T20:45:20.4+01:00 stdout F another zone",
		"2026-12-01T20:45:20.Z stdout F no fraction digits",
		"2026-12-01T20:45:20.1234567890Z stdout F ten digits",
		"2026-12-01T20:45:20x123456789Z stdout F no dot",
		"2026-12-01T20:45:20.12345678xZ stdout F a letter",
		"2026-12-01T20:45:20.5Z stdin F no such stream",
		"2026-12-01T20:45:20.5Z stdout",
		"2026-12-01T20:45:20.5Z stdout FF x",
		"2026-12-01T20:45:20.6Z stderr F last",
	}
	// records reads the lines as the follower does, or with Add alone, and says how many wholeLine read.
	records := func(useWholeLine bool) (out []string, whole int) {
		j := NewJoiner()
		for _, l := range lines {
			if sec, nsec, stream, msg, ok := j.wholeLine([]byte(l)); useWholeLine && ok {
				out = append(out, fmt.Sprintf("%s %s %q", time.Unix(sec, int64(nsec)).UTC().Format(time.RFC3339Nano), stream, msg))
				whole++
			} else if r, ok := j.Add([]byte(l)); ok {
				out = append(out, fmt.Sprintf("%s %s %q", r.Time.Format(time.RFC3339Nano), r.Stream, r.Message)+
					map[bool]string{true: " malformed"}[r.Malformed])
			}
		}
		return out, whole
	}
	want, _ := records(false)
	got, whole := records(true)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("with wholeLine:\n%s\nwith Add alone:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if whole < 5 {
		t.Errorf("wholeLine read %d of the lines, want the usual ones (at least 5)", whole)
	}
}

// Nine-digit fractions are read eight digits at a time; every digit and every byte that is not one, in
// each position, must read as the digit-by-digit loop reads it, and a fraction of that length without its
// dot is no fraction.
func TestNineDigitsReadsAsDigitsDoes(t *testing.T) {
	check := func(s []byte) {
		t.Helper()
		got, gotOK := nineDigits(s)
		want, wantOK := digits(s)
		if gotOK != wantOK || gotOK && got != want {
			t.Fatalf("nineDigits(%q) = %d, %v; digits gives %d, %v", s, got, gotOK, want, wantOK)
		}
	}
	for _, frac := range []string{"x123456789", "1234567890", ".12345678Z"} {
		if n, ok := parseFraction([]byte(frac)); ok {
			t.Errorf("parseFraction(%q) = %d, true; want it refused", frac, n)
		}
	}
	check([]byte("000000000"))
	check([]byte("999999999"))
	check([]byte("123456789"))
	for pos := range 9 {
		for c := range 256 {
			s := []byte("314159265")
			s[pos] = byte(c)
			check(s)
		}
	}
}

// wholeLine is Add's fast path for the usual line: whatever line it reads, Add (after the same lines)
// must read as the same record, so the fast path never reads a line its own way.
func FuzzWholeLineReadsAsAddDoes(f *testing.F) {
	f.Add([]byte("2026-12-01T20:45:19.123456789Z stdout F first"))
	f.Add([]byte("2026-12-01T20:45:19.5Z stderr F"))
	f.Add([]byte("2026-12-01T20:45:19Z stdout F "))
	f.Add([]byte("2026-12-01T20:45:19x123456789Z stdout F no dot"))
	f.Add([]byte("2026-12-01T20:45:19.12345678xZ stdout F a letter"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Both have read a line of the same second, so wholeLine's cached second is the fuzzed line's if its
		// first 19 bytes say so.
		prime := []byte("2026-12-01T20:45:19.000000000Z stdout F prime")
		fast, slow := NewJoiner(), NewJoiner()
		fast.Add(prime)
		slow.Add(prime)
		sec, nsec, stream, msg, ok := fast.wholeLine(raw)
		if !ok {
			return
		}
		rec, ok := slow.Add(raw)
		if !ok || rec.Malformed || rec.Time.Unix() != sec || rec.Time.Nanosecond() != nsec || rec.Stream != stream || !bytes.Equal(rec.Message, msg) {
			t.Fatalf("wholeLine(%q) = %d.%09d %s %q; Add gives %+v (ok %v)", raw, sec, nsec, stream, msg, rec, ok)
		}
	})
}
