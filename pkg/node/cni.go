package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
)

// CNIConfigFile is the agent's conflist; the agent writes no other file in the CNI directory.
const CNIConfigFile = "10-nodeagent.conflist"

// DefaultBridgeName is the Linux bridge the pods of this node attach to, unless configured otherwise.
const DefaultBridgeName = "nodeagent0"

// CNIConfig returns the conflist for podCIDR: a bridge with host-local IPAM and the node as gateway, portmap
// for hostPorts, like kubenet and kindnet set up. The runtime brings up each pod's loopback itself (containerd
// adds the loopback plugin to every network it loads). The network is named after the bridge, so that two
// agents on one machine (each with its own runtime) keep their IP allocations apart.
func CNIConfig(bridge, podCIDR string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       bridge,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      bridge,
				"isGateway":   true,
				"ipMasq":      false, // source NAT for traffic leaving the cluster belongs to the proxy's table
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": [][]map[string]string{{{"subnet": podCIDR}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// WriteCNIConfig writes the conflist for podCIDR into dir atomically, only when it differs from what is there.
func WriteCNIConfig(dir, bridge, podCIDR string) (changed bool, err error) {
	want, err := CNIConfig(bridge, podCIDR)
	if err != nil {
		return false, err
	}
	path := filepath.Join(dir, CNIConfigFile)
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	// The runtime watches the directory: a rename means it never reads a half-written file.
	tmp, err := os.CreateTemp(dir, ".nodeagent-*.tmp")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(want); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("installing %s: %w", path, err)
	}
	return true, nil
}

// ClearStaleBridgeAddresses removes addresses outside podCIDR from the agent's bridge. The bridge plugin
// refuses to run pods on a bridge that still holds the gateway of an earlier podCIDR (the node joined another
// cluster, or its CIDR was re-allocated); kubenet cleared them the same way. A missing bridge is fine: the
// plugin creates it with the first pod.
func ClearStaleBridgeAddresses(bridge, podCIDR string) error {
	_, want, err := net.ParseCIDR(podCIDR)
	if err != nil {
		return err
	}
	link, err := netlink.LinkByName(bridge)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return nil
		}
		return fmt.Errorf("looking up bridge %s: %w", bridge, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", bridge, err)
	}
	for _, a := range addrs {
		if want.Contains(a.IP) || a.IP.IsLinkLocalUnicast() {
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("removing stale address %s from %s: %w", a.IPNet, bridge, err)
		}
	}
	return nil
}
