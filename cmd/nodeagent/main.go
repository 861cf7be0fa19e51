// Command nodeagent makes this Linux host a Kubernetes worker node: it registers the Node, keeps its Lease
// and status, runs the Pods bound to it through CRI and programs the cluster's Service VIPs in nftables.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/pkg/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "v0.1.0-dev"

// Exit codes: 2 for a configuration the agent refuses, 1 for a failure while running.
const (
	exitRuntime = 1
	exitConfig  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "join" {
		os.Exit(joinAndRun(ctx, os.Args[2:]))
	}
	if len(os.Args) > 1 { // get, describe, dns-socket-holder
		if code, ok := agent.Tool(ctx, os.Args[1], os.Args[2:], os.Stdout, os.Stderr); ok {
			os.Exit(code)
		}
	}
	completed, cleanup, err := loadConfig(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nodeagent: invalid configuration:\n%v\n", err)
		os.Exit(exitConfig)
	}
	if cleanup {
		if err := agent.CleanupProxy(); err != nil {
			fmt.Fprintf(os.Stderr, "nodeagent: %v\n", err)
			os.Exit(exitRuntime)
		}
		return
	}
	os.Exit(run(ctx, completed))
}

// run runs the agent until ctx ends and returns the exit code.
func run(ctx context.Context, completed *agent.Completed) int {
	defer klog.Flush()
	if err := agent.Run(ctx, completed, version); err != nil {
		klog.ErrorS(err, "nodeagent stopped")
		return exitRuntime
	}
	return 0
}

// loadConfig reads the configuration and validates and completes it for the mode the flags choose.
// cleanup (--cleanup-proxy) needs no valid configuration.
func loadConfig(args []string) (completed *agent.Completed, cleanup bool, err error) {
	var proxyOnly, dnsOnly, logsOnly bool
	newFlags := func(cfg *config.Configuration, configFile *string) *pflag.FlagSet {
		fs := cfg.NewFlagSet("nodeagent", configFile)
		fs.BoolVar(&cleanup, "cleanup-proxy", false, "Remove the agent's nftables tables ("+agent.ProxyTable+" and the pod network's) and its routes to other nodes' pods, and exit, as kube-proxy --cleanup.")
		fs.BoolVar(&proxyOnly, "proxy-only", false, "Run only the Service proxy, as kube-proxy does: no Node registration, no pods.")
		fs.BoolVar(&dnsOnly, "dns-only", false, "Run only the cluster DNS server, as CoreDNS does: no Node registration, no pods.")
		fs.BoolVar(&logsOnly, "logs-only", false, "Run only the log shipper, as Fluent Bit does: no Node registration, no pods; without a kubeconfig, records carry what the log paths say.")
		return fs
	}
	var configFile string
	if err := newFlags(config.Default(), &configFile).Parse(args); err != nil || cleanup {
		return nil, cleanup, err
	}
	cfg, err := configure(config.Default(), configFile, newFlags, args)
	if err != nil {
		return nil, false, err
	}
	mode := agent.ModeNode
	var only []string
	for _, m := range []struct {
		set  bool
		mode agent.Mode
	}{{proxyOnly, agent.ModeProxyOnly}, {dnsOnly, agent.ModeDNSOnly}, {logsOnly, agent.ModeLogsOnly}} {
		if m.set {
			mode = m.mode
			only = append(only, "--"+m.mode.String())
		}
	}
	errs := cfg.Validate()
	if !mode.NeedsKubeconfig() && cfg.Kubeconfig == "" {
		errs = slices.DeleteFunc(errs, func(e *field.Error) bool { return e.Field == "kubeconfig" && e.Type == field.ErrorTypeRequired })
	}
	if len(only) > 1 {
		errs = append(errs, field.Invalid(field.NewPath(strings.TrimPrefix(only[1], "--")), true, strings.Join(only, " and ")+" exclude each other"))
	}
	completed, err = complete(cfg, mode, errs)
	return completed, false, err
}

// configure reads configFile (if given) over base, then the flags over that, so a flag always wins over the
// file and the file over base.
func configure(base *config.Configuration, configFile string, newFlags func(*config.Configuration, *string) *pflag.FlagSet, args []string) (*config.Configuration, error) {
	if configFile != "" {
		if err := base.LoadFile(configFile); err != nil {
			return nil, err
		}
	}
	if err := newFlags(base, new(string)).Parse(args); err != nil {
		return nil, err
	}
	return base, nil
}

// complete adds the mode's checks to errs and returns them all, one per line, or the completed configuration.
func complete(cfg *config.Configuration, mode agent.Mode, errs field.ErrorList) (*agent.Completed, error) {
	completed, more := agent.Complete(cfg, mode)
	var lines []string
	for _, e := range append(errs, more...) {
		lines = append(lines, "  "+e.Error())
	}
	if len(lines) > 0 {
		return nil, errors.New(strings.Join(lines, "\n"))
	}
	return completed, nil
}
