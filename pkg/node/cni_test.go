package node

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/nodeagent/nodeagent/internal/netnsutil"
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

func TestEnsureLocalAddressCreatesTheLinkOnceAndKeepsTheAddress(t *testing.T) {
	ns, err := netnsutil.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	addr := netip.MustParseAddr("169.254.20.10")
	err = netnsutil.Do(ns, func() error {
		for range 2 { // a restarted agent finds the bridge and the address there
			if err := EnsureLocalAddress(addr); err != nil {
				return err
			}
		}
		link, err := netlink.LinkByName(LocalServiceLink)
		if err != nil {
			return err
		}
		if link.Type() != "bridge" || link.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("link %s type %s flags %v: want an up bridge", link.Attrs().Name, link.Type(), link.Attrs().Flags)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != "169.254.20.10/32" {
			return fmt.Errorf("addresses %v, want 169.254.20.10/32 once", addrs)
		}
		// The address is the node's: a server binds it.
		l, err := net.ListenPacket("udp", "169.254.20.10:0")
		if err != nil {
			return err
		}
		return l.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}
