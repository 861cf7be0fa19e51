package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteCNIConfigUsesThePodCIDRAndWritesOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	changed, err := WriteCNIConfig(dir, DefaultBridgeName, "10.244.3.0/24")
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, CNIConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Name    string `json:"name"`
		Plugins []struct {
			Type   string `json:"type"`
			Bridge string `json:"bridge"`
			IPAM   struct {
				Type   string                `json:"type"`
				Ranges [][]map[string]string `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatalf("conflist is not JSON: %v", err)
	}
	if len(conf.Plugins) != 2 || conf.Plugins[0].Type != "bridge" || conf.Plugins[1].Type != "portmap" {
		t.Fatalf("plugins = %+v, want bridge then portmap", conf.Plugins)
	}
	if got := conf.Plugins[0].IPAM.Ranges[0][0]["subnet"]; got != "10.244.3.0/24" || conf.Plugins[0].IPAM.Type != "host-local" {
		t.Errorf("ipam = %+v, want host-local on 10.244.3.0/24", conf.Plugins[0].IPAM)
	}
	if changed, err := WriteCNIConfig(dir, DefaultBridgeName, "10.244.3.0/24"); err != nil || changed {
		t.Errorf("same CIDR again: changed=%v err=%v, want no write", changed, err)
	}
	if changed, err := WriteCNIConfig(dir, DefaultBridgeName, "10.244.4.0/24"); err != nil || !changed {
		t.Errorf("new CIDR: changed=%v err=%v, want a write", changed, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want only %s", len(entries), CNIConfigFile)
	}
}
