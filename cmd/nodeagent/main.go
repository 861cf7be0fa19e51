// Command nodeagent makes this Linux host a Kubernetes worker node: it registers the Node, keeps its Lease
// and status, runs the Pods bound to it through CRI and programs the cluster's Service VIPs in nftables.
package main

import (
	"context"
	"errors"
	"flag"
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, completed, version); err != nil {
		klog.ErrorS(err, "nodeagent stopped")
		klog.Flush()
		os.Exit(exitRuntime)
	}
	klog.Flush()
}

// loadConfig reads --config (if given) over the defaults, then applies the flags given on the command line,
// so a flag always wins over the file, and validates and completes the result for the mode the flags choose.
// cleanup (--cleanup-proxy) needs no valid configuration.
func loadConfig(args []string) (completed *agent.Completed, cleanup bool, err error) {
	var configFile string
	var proxyOnly, dnsOnly, logsOnly bool
	newFlags := func(cfg *config.Configuration) *pflag.FlagSet {
		fs := pflag.NewFlagSet("nodeagent", pflag.ContinueOnError)
		fs.StringVar(&configFile, "config", "", "Path to a "+config.Kind+" YAML file ("+config.APIVersion+"); flags override it.")
		fs.BoolVar(&cleanup, "cleanup-proxy", false, "Remove the agent's nftables table ("+agent.ProxyTable+") and exit, as kube-proxy --cleanup.")
		fs.BoolVar(&proxyOnly, "proxy-only", false, "Run only the Service proxy, as kube-proxy does: no Node registration, no pods.")
		fs.BoolVar(&dnsOnly, "dns-only", false, "Run only the cluster DNS server, as CoreDNS does: no Node registration, no pods.")
		fs.BoolVar(&logsOnly, "logs-only", false, "Run only the log shipper, as Fluent Bit does: no Node registration, no pods; without a kubeconfig, records carry what the log paths say.")
		cfg.AddFlags(fs)
		klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
		klog.InitFlags(klogFlags)
		fs.AddGoFlagSet(klogFlags)
		return fs
	}
	if err := newFlags(config.Default()).Parse(args); err != nil || cleanup {
		return nil, cleanup, err
	}
	cfg := config.Default()
	if configFile != "" {
		if cfg, err = config.LoadFile(configFile); err != nil {
			return nil, false, err
		}
	}
	if err := newFlags(cfg).Parse(args); err != nil {
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
	completed, more := agent.Complete(cfg, mode)
	if errs = append(errs, more...); len(errs) > 0 {
		lines := make([]string, len(errs))
		for i, e := range errs {
			lines[i] = "  " + e.Error()
		}
		return nil, false, errors.New(strings.Join(lines, "\n"))
	}
	return completed, false, nil
}
