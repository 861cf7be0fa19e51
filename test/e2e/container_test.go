package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A busybox container shows that command, args and env reach the process and its output reaches the CRI log
// file, and that deletion waits out the grace period before SIGKILL and then finalises the Pod.
func TestContainerCommandEnvLogsAndGracefulDeletion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	grace := int64(3)
	pod, err := stack.client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "shell"},
		Spec: corev1.PodSpec{
			NodeName:                      nodeName,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "sh", Image: "localhost/busybox:local", ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c"},
				Args:    []string{`echo "$GREETING from $POD_NAME in $POD_NAMESPACE"; exec sleep 3600`},
				Env: []corev1.EnvVar{
					{Name: "GREETING", Value: "hello"},
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
				},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet's layout: /var/log/pods/<ns>_<name>_<uid>/<container>/<restartCount>.log in CRI format.
	logFile := filepath.Join("/var/log/pods", ns+"_shell_"+string(pod.UID), "sh", "0.log")
	want := "stdout F hello from shell in " + ns
	var content []byte
	err = pollUntil(ctx, func() (bool, error) {
		content, _ = os.ReadFile(logFile)
		return strings.Contains(string(content), want), nil
	})
	if err != nil {
		t.Fatalf("log file %s never held %q (has %q)\n%s", logFile, want, content, describe(ns))
	}
	err = pollUntil(ctx, func() (bool, error) {
		p, err := stack.client.CoreV1().Pods(ns).Get(ctx, "shell", metav1.GetOptions{})
		return err == nil && podRunningAndReady(p), nil
	})
	if err != nil {
		t.Fatalf("pod not Running: %v\n%s", err, describe(ns))
	}

	started := time.Now()
	if err := stack.client.CoreV1().Pods(ns).Delete(ctx, "shell", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = pollUntil(ctx, func() (bool, error) {
		_, err := stack.client.CoreV1().Pods(ns).Get(ctx, "shell", metav1.GetOptions{})
		return err != nil, nil
	})
	took := time.Since(started)
	if err != nil {
		t.Fatalf("pod not finalised: %v\n%s", err, describe(ns))
	}
	// exec makes sleep PID 1 of the container, and PID 1 has no default action for SIGTERM: only the
	// SIGKILL after the grace period ends it.
	if took < time.Duration(grace)*time.Second {
		t.Errorf("pod finalised after %v, before its %ds grace period: SIGKILL came early", took, grace)
	}
	if took > time.Duration(grace)*time.Second+15*time.Second {
		t.Errorf("pod finalised after %v, long after its %ds grace period", took, grace)
	}
	if got := crictl(t, "ps", "-a", "--label", "io.kubernetes.pod.uid="+string(pod.UID), "-q"); len(got) != 0 {
		t.Errorf("containers left after deletion: %v", got)
	}
}

// Environment from a ConfigMap and a Secret (read by the agent as system:node under the Node authorizer),
// with $(VAR) expansion in env values and args, as the container sees it.
func TestEnvironmentFromConfigMapAndSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	core := stack.client.CoreV1()
	if _, err := core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"},
		Data: map[string]string{"mode": "fast"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		Data: map[string][]byte{"password": []byte("s3cret")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ref := func(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }
	pod, err := core.Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "env"},
		Spec: corev1.PodSpec{
			NodeName: nodeName,
			Containers: []corev1.Container{{
				Name: "sh", Image: "localhost/busybox:local", ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c"},
				Args:    []string{`echo "args=$(URL) shell=$CFG_mode/$PASSWORD"; exec sleep 3600`},
				EnvFrom: []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("settings")}}},
				Env: []corev1.EnvVar{
					{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: ref("creds"), Key: "password"}}},
					{Name: "URL", Value: "db://$(PASSWORD)@$(CFG_mode)"},
				},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join("/var/log/pods", ns+"_env_"+string(pod.UID), "sh", "0.log")
	want := "args=db://s3cret@fast shell=fast/s3cret"
	var content []byte
	err = pollUntil(ctx, func() (bool, error) {
		content, _ = os.ReadFile(logFile)
		return strings.Contains(string(content), want), nil
	})
	if err != nil {
		t.Fatalf("container never printed %q (log: %q)\n%s", want, content, describe(ns))
	}
}

// postStart and preStop exec hooks run in the container (they write to PID 1's stdout, so to the CRI log):
// postStart before the pod counts as running, preStop before SIGTERM on deletion.
func TestLifecycleHooks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	grace := int64(10)
	hook := func(msg string) *corev1.LifecycleHandler {
		return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo " + msg + " > /proc/1/fd/1"}}}
	}
	pod, err := stack.client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hooks"},
		Spec: corev1.PodSpec{
			NodeName:                      nodeName,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "c", Image: "localhost/busybox:local", ImagePullPolicy: corev1.PullNever,
				Command:   []string{"sh", "-c", "echo main-started; exec sleep 3600"},
				Lifecycle: &corev1.Lifecycle{PostStart: hook("poststart-ran"), PreStop: hook("prestop-ran")},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join("/var/log/pods", ns+"_hooks_"+string(pod.UID), "c", "0.log")
	err = pollUntil(ctx, func() (bool, error) {
		p, err := stack.client.CoreV1().Pods(ns).Get(ctx, "hooks", metav1.GetOptions{})
		return err == nil && podRunningAndReady(p), nil
	})
	if err != nil {
		t.Fatalf("pod not running: %v\n%s", err, describe(ns))
	}
	if data, _ := os.ReadFile(logFile); !strings.Contains(string(data), "poststart-ran") {
		t.Errorf("pod Running before its postStart hook ran: log %q", data)
	}
	started := time.Now()
	if err := stack.client.CoreV1().Pods(ns).Delete(ctx, "hooks", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = pollUntil(ctx, func() (bool, error) {
		_, err := stack.client.CoreV1().Pods(ns).Get(ctx, "hooks", metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("pod not finalised: %v", err)
	}
	data, _ := os.ReadFile(logFile)
	if !strings.Contains(string(data), "prestop-ran") {
		t.Errorf("preStop hook output missing from the log: %q", data)
	}
	// sleep is PID 1 and ignores SIGTERM: the pod is gone only after the grace period, hook included.
	if took := time.Since(started); took < time.Duration(grace)*time.Second {
		t.Errorf("pod gone after %v, before the %ds grace period", took, grace)
	}
}
