// Command testserver is the workload of nodeagent's tests, in the spirit of agnhost netexec: an HTTP server
// that tells who it is and who called, echoes, sleeps or exits on request, and TCP and UDP echo servers.
//
//	GET /hostname          the pod's hostname
//	GET /clientip          the caller's address as the server saw it (ip:port)
//	GET /echo?msg=TEXT     TEXT
//	GET /sleep?d=DURATION  waits DURATION (Go syntax, at most 5m) then answers "ok"
//	GET /exit?code=N       answers, then exits with status N
//	GET /healthz           "ok"
//
// TCP and UDP on --echo-port send back what they receive; --grpc-port serves the gRPC health service
// (SERVING for the overall server, service ""), for gRPC probes.
//
// As a client, --get URL fetches URL --count times, each on a new connection, and prints "got BODY" or
// "error ERR" per try (busybox's static wget cannot resolve even a numeric address in a bare image).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	httpPort := flag.Int("http-port", 8080, "HTTP port")
	echoPort := flag.Int("echo-port", 8081, "TCP and UDP echo port (0 disables)")
	grpcPort := flag.Int("grpc-port", 0, "gRPC health service port (0 disables)")
	get := flag.String("get", "", "fetch this URL instead of serving")
	count := flag.Int("count", 1, "how many times --get fetches")
	flag.Parse()
	if *get != "" {
		fetch(*get, *count)
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if *echoPort != 0 {
		go serveTCPEcho(*echoPort)
		go serveUDPEcho(*echoPort)
	}
	if *grpcPort != 0 {
		go serveGRPCHealth(*grpcPort)
	}
	srv := &http.Server{Addr: fmt.Sprintf(":%d", *httpPort), Handler: newMux(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Printf("testserver: http on %s, echo on %d", srv.Addr, *echoPort)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("testserver: %v", err)
	}
}

func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	hostname := func(w http.ResponseWriter, _ *http.Request) {
		name, _ := os.Hostname()
		fmt.Fprint(w, name)
	}
	mux.HandleFunc("/", hostname)
	mux.HandleFunc("/hostname", hostname)
	mux.HandleFunc("/clientip", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.RemoteAddr) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.URL.Query().Get("msg")) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d < 0 || d > 5*time.Minute {
			http.Error(w, "d must be a duration between 0 and 5m", http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(d):
			fmt.Fprint(w, "ok")
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil || code < 0 || code > 255 {
			http.Error(w, "code must be 0..255", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "exiting with %d", code)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		go func() {
			time.Sleep(100 * time.Millisecond) // let the answer leave before the process does
			os.Exit(code)
		}()
	})
	return mux
}

func serveTCPEcho(port int) {
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		log.Fatalf("testserver: tcp echo: %v", err)
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			log.Printf("testserver: tcp accept: %v", err)
			continue
		}
		go func() {
			defer conn.Close()
			_, _ = io.Copy(conn, conn)
		}()
	}
}

func serveUDPEcho(port int) {
	pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port))
	if err != nil {
		log.Fatalf("testserver: udp echo: %v", err)
	}
	buf := make([]byte, 65535)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			log.Printf("testserver: udp read: %v", err)
			continue
		}
		_, _ = pc.WriteTo(buf[:n], addr)
	}
}

func serveGRPCHealth(port int) {
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		log.Fatalf("testserver: grpc: %v", err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer()) // serves SERVING for the empty service name
	if err := srv.Serve(ln); err != nil {
		log.Printf("testserver: grpc: %v", err)
	}
}

func fetch(url string, count int) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range count {
		resp, err := client.Get(url)
		if err != nil {
			fmt.Println("error", err)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			fmt.Println("error", err)
			continue
		}
		fmt.Println("got", string(body))
	}
}
