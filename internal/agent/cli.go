package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/nodeagent/nodeagent/pkg/config"
)

// Tool runs the subcommands that sit beside the agent: `get pods` and `describe pod`, which ask a running
// agent through its local socket (localAPISocket), and `dns-socket-holder`, which an agent starts itself.
// ok is false when name is none of them; code is the exit code (1: the agent could not be asked, 2: usage).
func Tool(ctx context.Context, name string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	var err error
	switch name {
	case "dns-socket-holder": // HOST:PORT CONTROL-SOCKET
		err = HoldDNSSockets(ctx, args)
	case "get", "describe":
		err = inspect(ctx, name, args, stdout)
	default:
		return 0, false
	}
	var usage usageError
	switch {
	case errors.Is(err, pflag.ErrHelp):
		return 0, true
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "nodeagent %s: %v\n", name, err)
		return 2, true
	case err != nil:
		fmt.Fprintf(stderr, "nodeagent %s: %v\n", name, err)
		return 1, true
	}
	return 0, true
}

type usageError struct{ error }

// inspect is `nodeagent get pods [-n NS]` and `nodeagent describe pod NS/NAME` (or NAME -n NS).
func inspect(ctx context.Context, verb string, args []string, out io.Writer) error {
	fs := pflag.NewFlagSet("nodeagent "+verb, pflag.ContinueOnError)
	socket := fs.String("socket", config.Default().LocalAPISocket, "The agent's local API socket (localAPISocket).")
	namespace := fs.StringP("namespace", "n", "", "The pods' namespace (get: all when empty; describe: default when empty).")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", *socket)
		}}}
	kind := strings.TrimSuffix(fs.Arg(0), "s")
	switch {
	case verb == "get" && kind == "pod" && fs.NArg() == 1:
		var pods corev1.PodList
		if err := getJSON(ctx, client, "/pods", &pods); err != nil {
			return err
		}
		return printPods(out, pods.Items, *namespace)
	case verb == "describe" && kind == "pod" && fs.NArg() == 2:
		ns, name, found := strings.Cut(fs.Arg(1), "/")
		if !found {
			ns, name = *namespace, fs.Arg(1)
		}
		if ns == "" {
			ns = "default"
		}
		var desc PodDescription
		if err := getJSON(ctx, client, "/describe/pods/"+ns+"/"+name, &desc); err != nil {
			return err
		}
		printDescription(out, &desc)
		return nil
	}
	return usageError{errors.New("usage: nodeagent get pods [-n NAMESPACE] | nodeagent describe pod NAMESPACE/NAME [--socket PATH]")}
}

func getJSON(ctx context.Context, client *http.Client, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://nodeagent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("asking the agent (is it running, with this localAPISocket?): %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, into)
}

// printPods prints the pods as kubectl get pods does, with the node's view of their status.
func printPods(out io.Writer, pods []corev1.Pod, namespace string) error {
	w := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tNAME\tREADY\tSTATUS\tRESTARTS\tIP\tAGE")
	for _, p := range pods {
		if namespace != "" && p.Namespace != namespace {
			continue
		}
		ready, restarts := 0, int32(0)
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Ready {
				ready++
			}
			restarts += cs.RestartCount
		}
		age := "<unknown>"
		if !p.CreationTimestamp.IsZero() {
			age = duration.HumanDuration(time.Since(p.CreationTimestamp.Time))
		}
		fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s\t%d\t%s\t%s\n", p.Namespace, p.Name, ready, len(p.Spec.Containers), podStatus(&p),
			restarts, p.Status.PodIP, age)
	}
	return w.Flush()
}

// podStatus is kubectl's STATUS column: a waiting or terminated container's reason over the phase.
func podStatus(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	status := string(p.Status.Phase)
	if p.Status.Reason != "" {
		status = p.Status.Reason
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			status = w.Reason
		} else if t := cs.State.Terminated; t != nil && t.Reason != "" && status == string(corev1.PodRunning) {
			status = t.Reason
		}
	}
	return status
}

// printDescription prints one pod's description, a section per part of the node.
func printDescription(out io.Writer, d *PodDescription) {
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintf(w, "Name:\t%s/%s\nUID:\t%s\nPhase:\t%s\n", d.Namespace, d.Name, d.UID, d.Phase)
	if d.Reason != "" || d.Message != "" {
		fmt.Fprintf(w, "Reason:\t%s %s\n", d.Reason, d.Message)
	}
	fmt.Fprintf(w, "IPs:\t%s\nQoS:\t%s\nConditions:\t%s\n", strings.Join(d.PodIPs, ", "), d.QOSClass, strings.Join(d.Conditions, " "))
	fmt.Fprintln(w, "Containers:")
	for _, c := range d.Containers {
		fmt.Fprintf(w, "  %s:\t%s\n", c.Name, c.Image)
		fmt.Fprintf(w, "    State:\t%s\n    Ready:\t%t (started %t)\n    Restarts:\t%d\n", c.State, c.Ready, c.Started, c.RestartCount)
		if c.LastTermination != "" {
			fmt.Fprintf(w, "    Last termination:\t%s\n", c.LastTermination)
		}
		if c.ContainerID != "" {
			fmt.Fprintf(w, "    Container ID:\t%s\n", c.ContainerID)
		}
		for _, p := range c.Probes {
			fmt.Fprintf(w, "    Probe:\t%s\n", p)
		}
	}
	if len(d.Volumes) > 0 {
		fmt.Fprintln(w, "Volumes:")
		for _, v := range d.Volumes {
			fmt.Fprintf(w, "  %s:\t%s\t%s\n", v.Name, v.Kind, v.Path)
		}
	}
	fmt.Fprintln(w, "Services:")
	for _, s := range d.Services {
		fmt.Fprintf(w, "  %s/%s:\t%s\n", s.Namespace, s.Name, strings.Join(s.VIPs, " "))
		for _, c := range s.Chains {
			fmt.Fprintf(w, "    nft chain:\tinet nodeagent %s\n", c)
		}
	}
	fmt.Fprintln(w, "DNS names:")
	for _, n := range d.DNSNames {
		fmt.Fprintf(w, "  %s\n", n)
	}
	if d.Logs != nil {
		fmt.Fprintln(w, "Logs:\tsize\tread\tacknowledged")
		for _, f := range d.Logs.Files {
			fmt.Fprintf(w, "  %s\t%d\t%d\t%d\n", f.Path, f.Size, f.Read, f.Acknowledged)
		}
		last := "never, in this run"
		if d.Logs.LastAck != nil {
			last = d.Logs.LastAck.UTC().Format(time.RFC3339) + " (" + duration.HumanDuration(time.Since(*d.Logs.LastAck)) + " ago)"
		}
		fmt.Fprintf(w, "  receiver's last ack:\t%s\n", last)
	}
	fmt.Fprintln(w, "Events:")
	for _, e := range d.Events {
		fmt.Fprintf(w, "  %s\t%s\t%s\tx%d\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Type, e.Reason, e.Count, e.Message)
	}
}
