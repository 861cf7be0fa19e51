package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/agent"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// TestMain lets the tests run this binary's main() in a child process, to see its exit code and stderr.
func TestMain(m *testing.M) {
	if os.Getenv("NODEAGENT_TEST_RUN_MAIN") == "1" {
		os.Args = append([]string{"nodeagent"}, strings.Fields(os.Getenv("NODEAGENT_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain runs main() with args in a child process and returns its exit code and stderr.
func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NODEAGENT_TEST_RUN_MAIN=1", "NODEAGENT_TEST_ARGS="+strings.Join(args, " "))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}

func TestBadConfigurationExitsTwoWithFieldAndReason(t *testing.T) {
	kubeconfig := testutil.WriteFile(t, "kubeconfig", testutil.ValidKubeconfig)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing kubeconfig", []string{"--kubeconfig", "/nonexistent/kubeconfig"},
			`kubeconfig: Invalid value: "/nonexistent/kubeconfig": file does not exist or cannot be read`},
		{"no kubeconfig at all", nil, "kubeconfig: Required value"},
		{"bad CIDR", []string{"--kubeconfig", kubeconfig, "--pod-cidr", "10.244.0.0/99"},
			`podCIDR: Invalid value: "10.244.0.0/99": not a CIDR`},
		{"unknown config field", []string{"--config", testutil.WriteFile(t, "c.yaml",
			"apiVersion: nodeagent.io/v1alpha1\nkind: NodeAgentConfiguration\nkubeconfig: "+kubeconfig+"\nmaxpods: 3\n")},
			`unknown field "maxpods"`},
		{"unknown flag", []string{"--max-podz", "3"}, "unknown flag: --max-podz"},
		{"unloadable kubeconfig", []string{"--kubeconfig", testutil.WriteFile(t, "bad", "::")}, "kubeconfig: Invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := runMain(t, tt.args...)
			if code != exitConfig {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, exitConfig, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, stderr)
			}
		})
	}
}

func TestHelpListsKubeletFlagsAndExitsZero(t *testing.T) {
	code, stderr := runMain(t, "--help")
	if code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	for _, flag := range []string{"--kubeconfig", "--hostname-override", "--node-ip", "--cluster-dns", "--cluster-domain",
		"--root-dir", "--container-runtime-endpoint", "--max-pods", "--config"} {
		if !strings.Contains(stderr, flag) {
			t.Errorf("--help does not list %s", flag)
		}
	}
}

func TestFlagsOverrideTheConfigFile(t *testing.T) {
	kubeconfig := testutil.WriteFile(t, "kubeconfig", testutil.ValidKubeconfig)
	file := testutil.WriteFile(t, "c.yaml", "apiVersion: nodeagent.io/v1alpha1\nkind: NodeAgentConfiguration\nkubeconfig: "+
		kubeconfig+"\nmaxPods: 20\nclusterDomain: file.local\n")
	completed, _, err := loadConfig([]string{"--config", file, "--max-pods", "7"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := completed.Config()
	if cfg.MaxPods != 7 {
		t.Errorf("maxPods = %d, want the flag's 7", cfg.MaxPods)
	}
	if cfg.ClusterDomain != "file.local" {
		t.Errorf("clusterDomain = %q, want the file's file.local", cfg.ClusterDomain)
	}
}

func TestProxyOnlyNeedsTheProxy(t *testing.T) {
	kubeconfig := testutil.WriteFile(t, "kubeconfig", testutil.ValidKubeconfig)
	if c, _, err := loadConfig([]string{"--kubeconfig", kubeconfig, "--proxy-only"}); err != nil || c.Mode() != agent.ModeProxyOnly {
		t.Errorf("--proxy-only: %v, error %v; want the proxy-only mode", c, err)
	}
	_, _, err := loadConfig([]string{"--kubeconfig", kubeconfig, "--proxy-only", "--enable-proxy=false"})
	if err == nil || !strings.Contains(err.Error(), "proxy.enabled: Invalid value: false: --proxy-only runs the proxy") {
		t.Errorf("--proxy-only --enable-proxy=false: %v, want an error naming proxy.enabled", err)
	}
}

// --logs-only runs without a kubeconfig (records then carry what the log paths say), but not without a
// receiver, and not with another --*-only.
func TestLogsOnlyNeedsAReceiverButNoKubeconfig(t *testing.T) {
	if c, _, err := loadConfig([]string{"--logs-only", "--enable-log-shipping", "--log-receivers", "127.0.0.1:24224"}); err != nil || c.Mode() != agent.ModeLogsOnly {
		t.Errorf("--logs-only: %v, error %v; want the logs-only mode", c, err)
	}
	for args, want := range map[string]string{
		"--logs-only --enable-log-shipping": "logs.receivers: Required value",
		"--logs-only":                       "logs.enabled: Invalid value: false: --logs-only runs the log shipper",
		"--logs-only --enable-log-shipping --log-receivers 127.0.0.1:24224 --dns-only": "--dns-only and --logs-only exclude each other",
		"--enable-log-shipping --log-receivers fluentd":                                `logs.receivers[0]: Invalid value: "fluentd": want host:port`,
	} {
		_, _, err := loadConfig(strings.Fields(args))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// --cleanup-proxy removes the agent's nftables table and nothing else, without any other configuration. It
// runs in a network namespace of its own (unshare), so the host's tables are never touched.
func TestCleanupProxyRemovesOnlyTheAgentsTable(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and nft (hack/setup-node.sh installs nftables)")
	}
	script := `nft add table inet nodeagent && nft add chain inet nodeagent services && nft add table inet other &&
		"$0" -test.run='^$' && nft list tables`
	cmd := exec.Command("unshare", "--net", "sh", "-c", script, os.Args[0])
	cmd.Env = append(os.Environ(), "NODEAGENT_TEST_RUN_MAIN=1", "NODEAGENT_TEST_ARGS=--cleanup-proxy")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "table inet other") || strings.Contains(string(out), "table inet nodeagent") {
		t.Errorf("tables after --cleanup-proxy:\n%s\nwant inet other kept and inet nodeagent gone", out)
	}
}
