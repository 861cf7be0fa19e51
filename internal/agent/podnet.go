package agent

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nodeagent/nodeagent/internal/nft"
	"github.com/nodeagent/nodeagent/pkg/podnet"
)

// podnetComponent routes between this node's pods and the other nodes'.
type podnetComponent struct {
	nop
	manager *podnet.Manager
}

// newPodnetComponent watches every Node (the Node authorizer lets a node list them) on the shared cache.
func newPodnetComponent(s *shared) (*podnetComponent, error) {
	cfg := s.cfg.cfg
	conn, err := nft.Open(0)
	if err != nil {
		return nil, err
	}
	routes, err := netlink.NewHandle()
	if err != nil {
		return nil, err
	}
	clusterCIDRs, _ := cfg.Proxy.ClusterCIDRs() // validated; none when empty
	c := &podnetComponent{}
	nodes, err := s.api.AllNodes(func() { c.manager.NodeChanged() })
	if err != nil {
		return nil, err
	}
	c.manager = podnet.New(podnet.Config{NodeName: s.nodeName, PodCIDR: cfg.PodCIDR, ClusterCIDRs: clusterCIDRs,
		Resync: time.Minute}, nodes, routes, conn)
	return c, nil
}

func (c *podnetComponent) run(ctx context.Context) { c.manager.Run(ctx) }
