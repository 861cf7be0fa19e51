package podmanager

import (
	"context"
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
		Data:       map[string]string{"mode": "fast", "level": "3"},
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
	env, err := f.worker.environment(ctx, pod, c)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range env.keyValues() {
		got[kv.Key] = string(kv.Value)
	}
	want := map[string]string{"CFG_mode": "fast", "CFG_level": "overridden", "PASSWORD": "s3cret",
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
