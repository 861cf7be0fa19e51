package agent

import (
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/pkg/config"
)

func TestCompleteAcceptsTheDefaultsAndParsesThem(t *testing.T) {
	c, errs := Complete(config.Default(), ModeNode)
	if len(errs) != 0 {
		t.Fatalf("the defaults: %v", errs)
	}
	if len(c.eviction.hard) != len(config.DefaultEvictionHard()) || c.logs.tag == nil {
		t.Errorf("completed = %+v, want every default eviction threshold and the log tag parsed", c)
	}
}

// The sections only a component can parse are checked before anything starts, naming the field and the reason.
func TestCompleteNamesTheFieldsOnlyComponentsCanParse(t *testing.T) {
	cfg := config.Default()
	cfg.EvictionHard = map[string]string{"memory.available": "lots"}
	cfg.EvictionSoft = map[string]string{"memory.available": "500Mi"}
	cfg.Logs.TagTemplate = "kube.${podname}"
	cfg.DNS.Enabled = false
	_, errs := Complete(cfg, ModeDNSOnly)
	got := errs.ToAggregate().Error()
	for _, want := range []string{
		`evictionHard: Invalid value: {"memory.available":"lots"}: memory.available: "lots" is neither a quantity nor a percentage`,
		`memory.available: a soft threshold needs a grace period in evictionSoftGracePeriod`,
		`logs.tagTemplate: Invalid value: "kube.${podname}": unknown placeholder ${podname}`,
		`dns.enabled: Invalid value: false: --dns-only runs the DNS server: it must be enabled`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %q\nlack %q", got, want)
		}
	}
}

// standalone.enabled makes the node mode standalone; it cannot be combined with a single-component mode.
func TestCompleteTurnsTheNodeStandalone(t *testing.T) {
	cfg := config.Default()
	cfg.Standalone.Enabled = true
	if c, errs := Complete(cfg, ModeNode); len(errs) != 0 || c.Mode() != ModeStandalone {
		t.Errorf("standalone node: mode %v, errors %v", c.Mode(), errs)
	}
	_, errs := Complete(cfg, ModeProxyOnly)
	if want := "standalone.enabled: Invalid value: true: --standalone and --proxy-only exclude each other"; !strings.Contains(errs.ToAggregate().Error(), want) {
		t.Errorf("errors %v lack %q", errs, want)
	}
}
