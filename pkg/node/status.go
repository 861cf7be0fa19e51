package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func goarch() string { return runtime.GOARCH }

// computeStatus reads the machine and the runtime and returns the status the Node should have.
func (c *Controller) computeStatus(ctx context.Context) (corev1.NodeStatus, error) {
	capacity, err := c.capacity()
	if err != nil {
		return corev1.NodeStatus{}, err
	}
	allocatable, err := c.Allocatable()
	if err != nil {
		return corev1.NodeStatus{}, err
	}
	info, err := c.nodeInfo(ctx)
	if err != nil {
		return corev1.NodeStatus{}, err
	}
	addresses, err := c.addresses()
	if err != nil {
		return corev1.NodeStatus{}, err
	}
	return corev1.NodeStatus{
		Capacity:         capacity,
		Allocatable:      allocatable,
		Addresses:        addresses,
		NodeInfo:         info,
		Conditions:       c.conditions(ctx),
		DaemonEndpoints:  corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: c.cfg.KubeletPort}},
		DeclaredFeatures: c.cfg.DeclaredFeatures,
	}, nil
}

// Allocatable is what pods may use of the node: its capacity, as there are no system or kube reservations yet.
func (c *Controller) Allocatable() (corev1.ResourceList, error) { return c.capacity() }

func (c *Controller) capacity() (corev1.ResourceList, error) {
	memBytes, err := MemoryCapacity()
	if err != nil {
		return nil, err
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(c.cfg.RootDir, &fs); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", c.cfg.RootDir, err)
	}
	return corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(memBytes, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(int64(c.cfg.MaxPods), resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(int64(fs.Blocks)*fs.Bsize, resource.BinarySI),
	}, nil
}

// MemoryCapacity is the machine's memory in bytes (MemTotal), the node's memory capacity.
func MemoryCapacity() (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}

func (c *Controller) nodeInfo(ctx context.Context) (corev1.NodeSystemInfo, error) {
	v, err := c.runtime.Version(ctx, "")
	if err != nil {
		return corev1.NodeSystemInfo{}, fmt.Errorf("reading runtime version: %w", err)
	}
	var uts syscall.Utsname
	if err := syscall.Uname(&uts); err != nil {
		return corev1.NodeSystemInfo{}, err
	}
	machineID, _ := os.ReadFile("/etc/machine-id")
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return corev1.NodeSystemInfo{
		MachineID:               strings.TrimSpace(string(machineID)),
		BootID:                  strings.TrimSpace(string(bootID)),
		KernelVersion:           utsString(uts.Release[:]),
		OSImage:                 osImage(),
		OperatingSystem:         "linux",
		Architecture:            runtime.GOARCH,
		ContainerRuntimeVersion: v.RuntimeName + "://" + v.RuntimeVersion,
		KubeletVersion:          c.cfg.AgentVersion,
	}, nil
}

func utsString(field []int8) string {
	var b strings.Builder
	for _, ch := range field {
		if ch == 0 {
			break
		}
		b.WriteByte(byte(ch))
	}
	return b.String()
}

func osImage() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

// InternalIPs are the node's InternalIP addresses, as its status reports them.
func (c *Controller) InternalIPs() ([]string, error) {
	addrs, err := c.addresses()
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, a := range addrs {
		if a.Type == corev1.NodeInternalIP {
			ips = append(ips, a.Address)
		}
	}
	return ips, nil
}

// addresses returns the InternalIP (configured, or the default-route interface's) and the Hostname.
func (c *Controller) addresses() ([]corev1.NodeAddress, error) {
	ip := c.cfg.NodeIP
	if ip == "" {
		detected, err := defaultRouteIP()
		if err != nil {
			return nil, fmt.Errorf("finding the node IP (set nodeIP to choose one): %w", err)
		}
		ip = detected
	}
	return []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: ip},
		{Type: corev1.NodeHostName, Address: c.cfg.Name},
	}, nil
}

// defaultRouteIP returns the first IPv4 address of the interface that holds the IPv4 default route.
func defaultRouteIP() (string, error) {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "00000000" {
			continue
		}
		iface, err := net.InterfaceByName(f[0])
		if err != nil {
			return "", err
		}
		addrs, err := iface.Addrs()
		if err != nil {
			return "", err
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return n.IP.String(), nil
			}
		}
	}
	return "", fmt.Errorf("no interface with an IPv4 default route")
}

// conditions reports Ready from the runtime's own readiness, and the pressure conditions.
func (c *Controller) conditions(ctx context.Context) []corev1.NodeCondition {
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		Reason: "KubeletReady", Message: "nodeagent is posting ready status"}
	if problem := c.runtimeProblem(ctx); problem != "" {
		ready.Status, ready.Reason, ready.Message = corev1.ConditionFalse, "KubeletNotReady", problem
	}
	memory := corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse,
		Reason: "KubeletHasSufficientMemory", Message: "nodeagent has sufficient memory available"}
	if c.cfg.Pressure != nil && c.cfg.Pressure.MemoryPressure() {
		memory.Status, memory.Reason, memory.Message = corev1.ConditionTrue, "KubeletHasInsufficientMemory",
			"nodeagent has insufficient memory available"
	}
	disk := corev1.NodeCondition{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse,
		Reason: "KubeletHasNoDiskPressure", Message: "nodeagent has no disk pressure"}
	if c.cfg.Pressure != nil && c.cfg.Pressure.DiskPressure() {
		disk.Status, disk.Reason, disk.Message = corev1.ConditionTrue, "KubeletHasDiskPressure", "nodeagent has disk pressure"
	}
	pid := corev1.NodeCondition{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse,
		Reason: "KubeletHasSufficientPID", Message: "nodeagent has sufficient PID available"}
	if c.cfg.Pressure != nil && c.cfg.Pressure.PIDPressure() {
		pid.Status, pid.Reason, pid.Message = corev1.ConditionTrue, "KubeletHasInsufficientPID", "nodeagent has insufficient PID available"
	}
	return []corev1.NodeCondition{
		memory,
		disk,
		pid,
		ready,
	}
}

// runtimeProblem returns why the runtime is not ready to run pods, or "" when it is.
func (c *Controller) runtimeProblem(ctx context.Context) string {
	st, err := c.runtime.Status(ctx, false)
	if err != nil {
		return fmt.Sprintf("container runtime status check failed: %v", err)
	}
	var problems []string
	for _, cond := range st.GetStatus().GetConditions() {
		if (cond.Type == runtimeapi.RuntimeReady || cond.Type == runtimeapi.NetworkReady) && !cond.Status {
			problems = append(problems, fmt.Sprintf("%s=false reason:%s message:%s", cond.Type, cond.Reason, cond.Message))
		}
	}
	return strings.Join(problems, ", ")
}
