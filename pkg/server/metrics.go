package server

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// newHTTPRequests is the kubelet's kubelet_http_requests_total, with its labels: the method, the path's
// first segment (metrics/<name> for the metrics paths; "other" for paths the node API does not serve), the
// server type (always readwrite: there is no read-only port) and whether the request is long-running.
func newHTTPRequests() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "kubelet", Name: "http_requests_total",
		Help: "Number of the http requests received since the server started"},
		[]string{"method", "path", "server_type", "long_running"})
}

// pathBuckets are the first path segments the node API serves.
var pathBuckets = map[string]bool{"healthz": true, "pods": true, "runningpods": true, "containerLogs": true, "configz": true,
	"exec": true, "attach": true, "portForward": true, "run": true, "metrics": true, "stats": true, "logs": true}

// longRunning are the buckets of streams that stay open (the kubelet counts exec, attach and port-forward).
var longRunning = map[string]bool{"exec": true, "attach": true, "portForward": true}

func requestLabels(method, path string) []string {
	switch method {
	case "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT":
	default:
		method = "other"
	}
	parts := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 3)
	bucket := parts[0]
	if !pathBuckets[bucket] {
		bucket = "other"
	} else if bucket == "metrics" && len(parts) > 1 && parts[1] != "" {
		bucket = "metrics/" + parts[1]
	}
	return []string{method, bucket, "readwrite", strconv.FormatBool(longRunning[bucket])}
}
