package podmanager

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpandFollowsKubernetesRules(t *testing.T) {
	vars := map[string]string{"A": "a", "B": "b", "EMPTY": ""}
	for in, want := range map[string]string{
		"$(A)":        "a",
		"x$(A)y$(B)z": "xaybz",
		"$$(A)":       "$(A)",
		"$(UNDEF)":    "$(UNDEF)",
		"$(A":         "$(A",
		"$A":          "$A",
		"cost: 5$":    "cost: 5$",
		"$(EMPTY)!":   "!",
		"$$$(A)":      "$a",
		"no dollars":  "no dollars",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvironmentFromConfigMapsSecretsAndExpansion(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	f := newFixture(t, pod)
	ctx := context.Background()
	optional := true
	_, _ = f.client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"},
		Data:       map[string]string{"mode": "fast", "level": "3", "data-1": "value-1"},
	}, metav1.CreateOptions{})
	_, _ = f.client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Data: map[string][]byte{"password": []byte("s3cret")},
	}, metav1.CreateOptions{})
	c := &corev1.Container{
		Name: "app",
		EnvFrom: []corev1.EnvFromSource{
			{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: &optional}},
		},
		Env: []corev1.EnvVar{
			{Name: "CFG_level", Value: "overridden"},
			{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
			{Name: "MAYBE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "k", Optional: &optional}}},
			{Name: "URL", Value: "db://$(PASSWORD)@$(CFG_mode)/$(NOPE)"},
		},
		Command: []string{"run", "--mode=$(CFG_mode)", "$$(CFG_mode)"},
	}
	env, err := f.worker.environment(ctx, pod, c, podAddresses{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range env.keyValues() {
		got[kv.Key] = string(kv.Value)
	}
	// Keys that are not shell identifiers (data-1) are variables too (relaxed names, GA since v1.34).
	want := map[string]string{"CFG_mode": "fast", "CFG_level": "overridden", "CFG_data-1": "value-1", "PASSWORD": "s3cret",
		"URL": "db://s3cret@fast/$(NOPE)"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["MAYBE"]; ok {
		t.Error("MAYBE is set, want an optional reference to a missing ConfigMap skipped")
	}
	if cmd := env.expandAll(c.Command); strings.Join(cmd, " ") != "run --mode=fast $(CFG_mode)" {
		t.Errorf("command = %q", cmd)
	}
}

func TestMissingRequiredEnvSourceIsAConfigError(t *testing.T) {
	pod := testPod("localhost/testserver:local")
	pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: "X",
		ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "missing"}, Key: "k"}}})
	f := newFixture(t, pod)
	f.runtime.SetFakeImages([]string{"localhost/testserver:local"})
	status := f.syncAndRefresh(t)
	w := status.ContainerStatuses[0].State.Waiting
	if w == nil || w.Reason != "CreateContainerConfigError" || !strings.Contains(w.Message, `configmap "missing"`) {
		t.Fatalf("waiting = %+v, want CreateContainerConfigError naming the configmap", w)
	}
	if all, _ := f.runtime.ListContainers(context.Background(), nil); len(all) != 0 {
		t.Errorf("a container was created without its environment: %v", all)
	}
}

// Every fieldRef the API accepts for env reaches the container, the addresses as the runtime has them (the
// first container is created before the status with the pod's IP is posted).
func TestEnvFieldRefs(t *testing.T) {
	pod := testPod("busybox")
	pod.Labels = map[string]string{"app": "web", "tier": "front"}
	pod.Annotations = map[string]string{"note": "hi"}
	pod.Spec.ServiceAccountName = "robot"
	f := newFixture(t, pod)
	paths := map[string]string{
		"NAME": "metadata.name", "NS": "metadata.namespace", "UID": "metadata.uid",
		"APP": "metadata.labels['app']", "NOTE": "metadata.annotations['note']", "MISSING": "metadata.labels['nope']",
		"LABELS": "metadata.labels", "NODE": "spec.nodeName", "SA": "spec.serviceAccountName",
		"POD_IP": "status.podIP", "POD_IPS": "status.podIPs", "HOST_IP": "status.hostIP", "HOST_IPS": "status.hostIPs",
	}
	c := &corev1.Container{Name: "app"}
	for _, name := range slices.Sorted(maps.Keys(paths)) {
		c.Env = append(c.Env, corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: paths[name]}}})
	}
	env, err := f.worker.environment(context.Background(), pod, c, podAddresses{
		podIPs: []string{"10.244.0.5", "fd00::5"}, hostIPs: []string{"192.0.2.10", "2001:db8::10"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"NAME": "web", "NS": "default", "UID": "uid-1", "APP": "web", "NOTE": "hi", "MISSING": "",
		"LABELS": "app=\"web\"\ntier=\"front\"", "NODE": "node-a", "SA": "robot",
		"POD_IP": "10.244.0.5", "POD_IPS": "10.244.0.5,fd00::5", "HOST_IP": "192.0.2.10", "HOST_IPS": "192.0.2.10,2001:db8::10"}
	got := map[string]string{}
	for _, kv := range env.keyValues() {
		got[kv.Key] = string(kv.Value)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s (%s) = %q, want %q", k, paths[k], got[k], v)
		}
	}
}

// The node's first InternalIP of each family are the pod's hostIPs.
func TestHostIPsAreTheNodesFirstInternalIPOfEachFamily(t *testing.T) {
	f := newFixture(t, testPod("busybox"))
	f.worker.m.node = func() *corev1.Node {
		return &corev1.Node{Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: "node-a"}, {Type: corev1.NodeInternalIP, Address: "2001:db8::10"},
			{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}, {Type: corev1.NodeInternalIP, Address: "192.0.2.11"},
			{Type: corev1.NodeExternalIP, Address: "203.0.113.1"},
		}}}
	}
	if got := f.worker.m.hostIPs(); !slices.Equal(got, []string{"2001:db8::10", "192.0.2.10"}) {
		t.Errorf("hostIPs %v", got)
	}
}
