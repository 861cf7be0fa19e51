package e2e

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// As under systemd (Type=notify): the agent says READY=1 only once its Node is registered and renewed by
// this very process and its node API answers, then STOPPING=1 when it is stopped.
func TestAgentTellsSystemdWhenItIsReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	socket := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := stack.killAgent(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	stack.agentEnv = []string{"NOTIFY_SOCKET=" + socket}
	t.Cleanup(func() {
		stack.agentEnv = nil
		restartAgent(t)
	})
	if err := stack.startAgent(); err != nil {
		t.Fatal(err)
	}
	ready := readNotification(t, conn, "READY=1")
	// At READY the Node is registered: Ready, with a status this agent posted.
	node, err := stack.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil || !nodeReady(node) || !postedSince(node, started) {
		t.Errorf("at READY=1 the node's conditions are %v (%v), want Ready with a heartbeat after %v", nodeConditions(node), err, started)
	}
	if _, err := stack.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodeName, "proxy", "healthz").DoRaw(ctx); err != nil {
		t.Errorf("at READY=1 the node API does not answer: %v", err)
	}
	if !strings.Contains(ready, "STATUS=node "+nodeName+":") {
		t.Errorf("READY came with %q, want a STATUS= line naming the node", ready)
	}
	stopProcess(stack.agent)
	readNotification(t, conn, "STOPPING=1")
	stack.agentEnv = nil
	if err := stack.startAgent(); err != nil { // for the cleanup's restart to stop
		t.Fatal(err)
	}
}

func readNotification(t *testing.T, conn *net.UnixConn, want string) string {
	t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(90 * time.Second)
	for {
		_ = conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no %s from the agent (see %s/nodeagent.log): %v", want, runDir, err)
		}
		if msg := string(buf[:n]); strings.HasPrefix(msg, want) {
			return msg
		}
	}
}

// postedSince is whether the Node's Ready condition was posted at or after since.
func postedSince(n *corev1.Node, since time.Time) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return !c.LastHeartbeatTime.Time.Before(since.Truncate(time.Second))
		}
	}
	return false
}

func nodeConditions(n *corev1.Node) []corev1.NodeCondition {
	if n == nil {
		return nil
	}
	return n.Status.Conditions
}
