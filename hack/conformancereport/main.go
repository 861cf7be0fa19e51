// Command conformancereport reads the JUnit report of a make conformance run and writes the table the
// project keeps: specs run, passed, failed and skipped, then each failure with the first lines of its cause.
//
// Usage: go run ./hack/conformancereport REPORT.xml [--out results.md]
package main

import (
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// The parts of ginkgo's JUnit report that the table needs.
type testSuites struct {
	Suites []struct {
		Cases []testCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type testCase struct {
	Name    string `xml:"name,attr"`
	Status  string `xml:"status,attr"`
	Failure *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
}

func main() {
	out := flag.String("out", "", "also write the table to this file")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: conformancereport REPORT.xml [--out FILE]")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *out); err != nil {
		fmt.Fprintf(os.Stderr, "conformancereport: %v\n", err)
		os.Exit(1)
	}
}

func run(reportPath, outPath string) error {
	data, err := os.ReadFile(reportPath)
	if err != nil {
		return err
	}
	var suites testSuites
	if err := xml.Unmarshal(data, &suites); err != nil {
		return fmt.Errorf("parsing %s: %w", reportPath, err)
	}
	var w io.Writer = os.Stdout
	if outPath != "" {
		f, err := os.Create(outPath)
		if err != nil {
			return err
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	writeTable(w, suites)
	return nil
}

// writeTable counts the specs ([It] cases; the suite's setup nodes are not specs) by outcome and lists the
// failures sorted by name. Specs that the focus and skip filters left out are not counted as skipped:
// skipped are those the suite itself skipped at run time (e.g. a missing feature).
func writeTable(w io.Writer, suites testSuites) {
	var run, passed, skipped int
	var failures []testCase
	for _, s := range suites.Suites {
		for _, c := range s.Cases {
			if !strings.HasPrefix(c.Name, "[It]") {
				if c.Status == "failed" || c.Status == "panicked" || c.Status == "timedout" || c.Status == "interrupted" {
					failures = append(failures, c)
				}
				continue
			}
			switch c.Status {
			case "passed":
				run++
				passed++
			case "skipped":
				if skippedByFilter(c) {
					continue
				}
				skipped++
			case "pending":
			default:
				run++
				failures = append(failures, c)
			}
		}
	}
	sort.Slice(failures, func(i, j int) bool { return failures[i].Name < failures[j].Name })
	fmt.Fprintf(w, "| specs run | passed | failed | skipped at run time |\n| --- | --- | --- | --- |\n")
	fmt.Fprintf(w, "| %d | %d | %d | %d |\n", run, passed, len(failures), skipped)
	if len(failures) == 0 {
		return
	}
	fmt.Fprintf(w, "\nFailures:\n\n")
	for _, f := range failures {
		fmt.Fprintf(w, "- %s\n  %s\n", strings.TrimPrefix(f.Name, "[It] "), cause(f))
	}
}

// skippedByFilter tells specs that --focus/--skip left out (never run; ginkgo's message is just "skipped")
// from those that ran and skipped themselves ("skipped - <why>").
func skippedByFilter(c testCase) bool { return c.Skipped != nil && c.Skipped.Message == "skipped" }

// cause is the first meaningful lines of a failure, on one line.
func cause(c testCase) string {
	text := ""
	switch {
	case c.Failure != nil:
		text = c.Failure.Message + "\n" + c.Failure.Text
	case c.Error != nil:
		text = c.Error.Message + "\n" + c.Error.Text
	}
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
		if len(lines) == 3 {
			break
		}
	}
	s := strings.Join(lines, " / ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}
