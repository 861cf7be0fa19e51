package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/pkg/config"
	"github.com/nodeagent/nodeagent/pkg/join"
)

// joinAndRun is `nodeagent join <host:port> --token ... --discovery-token-ca-cert-hash ...`, kubeadm join's
// arguments: discovery, the cluster's kubelet settings under the user's file and flags, the files a restart
// needs, then the agent. Whatever stops the join exits 2.
func joinAndRun(ctx context.Context, args []string) int {
	var opts join.Options
	newFlags := func(cfg *config.Configuration, configFile *string) *pflag.FlagSet {
		fs := cfg.NewFlagSet("nodeagent join", configFile)
		fs.StringVar(&opts.Token, "token", "", "The bootstrap token, as kubeadm token create prints it.")
		fs.StringSliceVar(&opts.CACertHashes, "discovery-token-ca-cert-hash", nil, "The cluster CA's public key hash (sha256:<hex>) to pin.")
		fs.BoolVar(&opts.UnsafeSkipCAVerification, "discovery-token-unsafe-skip-ca-verification", false, "Trust the cluster CA the server names, without a pin.")
		fs.DurationVar(&opts.Timeout, "discovery-timeout", 5*time.Minute, "How long discovery retries an unreachable server or a token not yet signed.")
		return fs
	}
	var configFile string
	fs := newFlags(config.Default(), &configFile)
	if err := fs.Parse(args); errors.Is(err, pflag.ErrHelp) {
		return 0
	} else if err != nil || fs.NArg() != 1 {
		return joinFailed(fmt.Errorf("usage: nodeagent join <host:port> --token <id.secret> --discovery-token-ca-cert-hash sha256:<hex> [agent flags]: %v", err))
	}
	opts.APIServer = fs.Arg(0)
	joined, err := join.Join(ctx, opts, func(base *config.Configuration) (*config.Configuration, error) {
		return configure(base, configFile, newFlags, args)
	})
	if err != nil {
		return joinFailed(err)
	}
	completed, err := complete(joined.Config, agent.ModeNode, joined.Config.Validate())
	if err != nil {
		return joinFailed(err)
	}
	fmt.Fprintf(os.Stderr, "nodeagent join: joined %s; to restart the node: nodeagent --config %s\n%s", joined.Server, joined.Files.Config, agent.DaemonSetAdvice)
	return run(ctx, completed)
}

func joinFailed(err error) int {
	fmt.Fprintf(os.Stderr, "nodeagent join: %v\n", err)
	return exitConfig
}
