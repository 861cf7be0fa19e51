package logs

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics have Fluent Bit's names, with its label name= set to the plugin instance Fluent Bit would show
// (tail.0 for reading, forward.0 for sending), so its dashboards and alerts work on the agent.
type metrics struct {
	inRecords, inBytes   prometheus.Counter
	outRecords, outBytes prometheus.Counter
	retries, errors      prometheus.Counter
	malformed            prometheus.Counter
	skippedFiles         prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, buffer *DiskBuffer) (*metrics, error) {
	in := prometheus.Labels{"name": "tail.0"}
	out := prometheus.Labels{"name": "forward.0"}
	counter := func(name, help string, labels prometheus.Labels) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	m := &metrics{
		inRecords:  counter("fluentbit_input_records_total", "Number of input records.", in),
		inBytes:    counter("fluentbit_input_bytes_total", "Number of input bytes.", in),
		outRecords: counter("fluentbit_output_proc_records_total", "Number of processed output records.", out),
		outBytes:   counter("fluentbit_output_proc_bytes_total", "Number of processed output bytes.", out),
		retries:    counter("fluentbit_output_retries_total", "Number of output retries.", out),
		errors:     counter("fluentbit_output_errors_total", "Number of output errors.", out),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{Name: "nodeagent_logs_malformed_lines_total",
			Help: "Lines that were not in the CRI log format; each was forwarded raw."}),
		skippedFiles: prometheus.NewCounter(prometheus.CounterOpts{Name: "nodeagent_logs_skipped_files_total",
			Help: "Container log files the agent could not read to their end (removed while it was stopped, or damaged); their remaining lines were not shipped."}),
	}
	collectors := []prometheus.Collector{m.inRecords, m.inBytes, m.outRecords, m.outBytes, m.retries, m.errors, m.malformed, m.skippedFiles,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fluentbit_output_dropped_records_total",
			Help: "Number of dropped records: pushed out of the buffer by its size limit or a full disk.", ConstLabels: out},
			func() float64 { return float64(buffer.Stats().DroppedRecords) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nodeagent_logs_buffer_bytes",
			Help: "Bytes of log chunks waiting on disk for the receiver's acknowledgement."},
			func() float64 { return float64(buffer.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nodeagent_logs_buffer_chunks",
			Help: "Log chunks waiting on disk for the receiver's acknowledgement."},
			func() float64 { return float64(buffer.Stats().Chunks) }),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering log shipping metrics: %w", err)
		}
	}
	return m, nil
}
