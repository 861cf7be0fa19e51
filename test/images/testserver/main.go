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
// --whoami asks the API server who the pod is, as an in-cluster client does, and prints "user NAME" or
// "error ERR", up to --count times a second apart until it gets an answer.
package main

import (
	"context"
	"encoding/json"
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
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/client-go/rest"
)

func main() {
	httpPort := flag.Int("http-port", 8080, "HTTP port")
	echoPort := flag.Int("echo-port", 8081, "TCP and UDP echo port (0 disables)")
	grpcPort := flag.Int("grpc-port", 0, "gRPC health service port (0 disables)")
	get := flag.String("get", "", "fetch this URL instead of serving")
	whoami := flag.Bool("whoami", false, "ask the API server who this pod is instead of serving")
	count := flag.Int("count", 1, "how many times --get fetches, or --whoami tries")
	flag.Parse()
	if *get != "" {
		fetch(*get, *count)
		return
	}
	if *whoami {
		whoAmI(*count)
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

// whoAmI posts a SelfSubjectReview with client-go's in-cluster configuration: the API server's address from
// the kubernetes Service's environment variables, the pod's service account token and the cluster CA.
func whoAmI(tries int) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		fmt.Println("error", err)
		return
	}
	cfg.Timeout = 2 * time.Second
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	review := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	for i := range tries {
		if i > 0 {
			time.Sleep(time.Second)
		}
		resp, err := client.Post(cfg.Host+"/apis/authentication.k8s.io/v1/selfsubjectreviews", "application/json", strings.NewReader(review))
		if err != nil {
			fmt.Println("error", err)
			continue
		}
		var answer struct {
			Status struct {
				UserInfo struct {
					Username string `json:"username"`
				} `json:"userInfo"`
			} `json:"status"`
		}
		err = json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			fmt.Println("error", resp.Status, err)
			continue
		}
		fmt.Println("user", answer.Status.UserInfo.Username)
		return
	}
}
