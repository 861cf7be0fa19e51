package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The node API as a user meets it: the v1.37 kubectl, through the API server, against the agent.

// kubectl runs the v1.37 kubectl as the admin in namespace ns (none given when empty: the objects name
// theirs) with stdin, and returns what it printed (stdout and stderr together) and its exit code.
func kubectl(ctx context.Context, t *testing.T, ns, stdin string, args ...string) (string, int) {
	t.Helper()
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.CommandContext(ctx, stack.kubectl, append([]string{"--kubeconfig", stack.admin}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

// kubectlStream starts a kubectl that keeps running (logs -f, attach, port-forward) with stdin (nil for none)
// and returns its output as lines; the test's end stops it.
func kubectlStream(t *testing.T, ns string, stdin io.Reader, args ...string) <-chan string {
	t.Helper()
	cmd := exec.Command(stack.kubectl, append([]string{"--kubeconfig", stack.admin, "-n", ns}, args...)...)
	cmd.Stdin = stdin
	cmd.WaitDelay = 10 * time.Second // a stdin that never ends must not hold the test's end
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(lines)
		scanner := bufio.NewScanner(out)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
	}()
	t.Cleanup(func() {
		stopProcess(cmd)
		for range lines { // let the reader end
		}
		<-done
	})
	return lines
}

// nextLine waits for the next line of a stream, failing the test at ctx's end or the stream's.
func nextLine(ctx context.Context, t *testing.T, lines <-chan string, what string) string {
	t.Helper()
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatalf("%s: kubectl ended", what)
		}
		return line
	case <-ctx.Done():
		t.Fatalf("%s: no line before the deadline", what)
	}
	return ""
}

func TestKubectlLogsOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	startBusybox(ctx, t, ns, "talker", `echo early-1; echo early-2; sleep 2; echo late-1; echo late-2; exec sleep 3600`)
	var all string
	if err := pollUntil(ctx, func() (bool, error) {
		all, _ = kubectl(ctx, t, ns, "", "logs", "talker")
		return all == "early-1\nearly-2\nlate-1\nlate-2\n", nil
	}); err != nil {
		t.Fatalf("kubectl logs printed %q, want the four lines", all)
	}
	if out, _ := kubectl(ctx, t, ns, "", "logs", "talker", "--tail=1"); out != "late-2\n" {
		t.Errorf("kubectl logs --tail=1 printed %q, want late-2", out)
	}
	if out, _ := kubectl(ctx, t, ns, "", "logs", "talker", "--limit-bytes=3"); out != "ear" {
		t.Errorf("kubectl logs --limit-bytes=3 printed %q, want ear", out)
	}
	// --timestamps gives each line its time as the runtime wrote it; --since-time from the first late line
	// leaves the early ones out, two seconds before it.
	stamped, _ := kubectl(ctx, t, ns, "", "logs", "talker", "--timestamps")
	var lateAt string
	for _, line := range strings.Split(stamped, "\n") {
		if at, text, ok := strings.Cut(line, " "); ok && text == "late-1" {
			if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
				t.Fatalf("kubectl logs --timestamps: %q has no RFC 3339 time: %v", line, err)
			}
			lateAt = at
		}
	}
	if lateAt == "" {
		t.Fatalf("kubectl logs --timestamps printed %q, without late-1", stamped)
	}
	if out, _ := kubectl(ctx, t, ns, "", "logs", "talker", "--since-time="+lateAt); out != "late-1\nlate-2\n" {
		t.Errorf("kubectl logs --since-time=%s printed %q, want the late lines", lateAt, out)
	}
	if out, _ := kubectl(ctx, t, ns, "", "logs", "talker", "--since=1h"); out != all {
		t.Errorf("kubectl logs --since=1h printed %q, want every line", out)
	}
}

// kubectl logs --previous reads the container's last run, and plain kubectl logs the current one.
func TestKubectlLogsPrevious(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pod := busyboxPod("restarter", 0, `n=$(cat /d/n 2>/dev/null || echo 0); echo run-$n; echo $((n+1)) > /d/n
		[ "$n" -ge 1 ] && exec sleep 3600; exit 1`)
	pod.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "d", MountPath: "/d"}}
	if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForPod(ctx, t, ns, "restarter", "restarted once and running", func(p *corev1.Pod) bool {
		return podRunningAndReady(p) && p.Status.ContainerStatuses[0].RestartCount == 1
	})
	if out, code := kubectl(ctx, t, ns, "", "logs", "restarter", "--previous"); out != "run-0\n" {
		t.Errorf("kubectl logs --previous printed %q (exit %d), want run-0", out, code)
	}
	if out, code := kubectl(ctx, t, ns, "", "logs", "restarter"); out != "run-1\n" {
		t.Errorf("kubectl logs printed %q (exit %d), want run-1", out, code)
	}
}

// kubectl logs -f keeps streaming while the agent rotates the log under it (containerLogMaxSize is 256Ki in
// the e2e configuration): every line arrives once and in order.
func TestKubectlLogsFollowAcrossRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	const lines = 3000 // of 200 bytes: 600 KB, two rotations or more while it is followed
	// The pod waits for the follower before it writes, then writes for about 6 s.
	if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, busyboxPod("writer", 0, fmt.Sprintf(
		`echo ready; while [ ! -e /tmp/go ]; do sleep 0.1; done
		pad=$(printf '%%190s' | tr ' ' x); i=0
		while [ $i -lt %d ]; do echo "n-$i $pad"; i=$((i+1)); [ $((i %% 10)) -eq 0 ] && usleep 20000; done
		echo finished; exec sleep 3600`, lines)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := waitForPod(ctx, t, ns, "writer", "Running", podRunningAndReady)
	follow := kubectlStream(t, ns, nil, "logs", "-f", "writer")
	if line := nextLine(ctx, t, follow, "kubectl logs -f"); line != "ready" {
		t.Fatalf("kubectl logs -f began with %q, want ready", line)
	}
	if out, code := kubectl(ctx, t, ns, "", "exec", "writer", "--", "touch", "/tmp/go"); code != 0 {
		t.Fatalf("kubectl exec touch: %s", out)
	}
	for want := 0; want < lines; want++ {
		line := nextLine(ctx, t, follow, "kubectl logs -f")
		if n, _, _ := strings.Cut(line, " "); n != fmt.Sprintf("n-%d", want) {
			t.Fatalf("kubectl logs -f gave %.20q where n-%d was due", line, want)
		}
	}
	if line := nextLine(ctx, t, follow, "kubectl logs -f"); line != "finished" {
		t.Errorf("kubectl logs -f gave %.20q after the last line, want finished", line)
	}
	rotated, err := exec.Command("sh", "-c", "ls "+logFile(pod, "c")+".* | wc -l").Output()
	if err != nil || strings.TrimSpace(string(rotated)) == "0" {
		t.Errorf("the log was not rotated while it was followed (%v, %s rotated files): the test proved nothing", err, rotated)
	}
}

// kubectl exec passes stdin, gives a terminal with -t, and exits with the command's exit code.
func TestKubectlExec(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	startBusybox(ctx, t, ns, "shell", "exec sleep 3600")
	if out, code := kubectl(ctx, t, ns, "hello\n", "exec", "-i", "shell", "--", "sh", "-c", "read x; echo got-$x"); out != "got-hello\n" || code != 0 {
		t.Errorf("kubectl exec -i printed %q and exited %d, want got-hello and 0", out, code)
	}
	if out, code := kubectl(ctx, t, ns, "", "exec", "shell", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("kubectl exec of exit 7 exited %d (%q), want 7", code, out)
	}
	// -t needs a terminal on kubectl's side too: script(1) gives it one.
	cmdline := fmt.Sprintf("%s --kubeconfig %s -n %s exec -it shell -- sh -c 'test -t 0 && echo on-a-tty; stty size'",
		stack.kubectl, stack.admin, ns)
	out, err := exec.CommandContext(ctx, "script", "-qec", cmdline, "/dev/null").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "on-a-tty") {
		t.Errorf("kubectl exec -it: %v, printed %q, want on-a-tty", err, out)
	}
}

// kubectl attach joins a running container's stdin and stdout.
func TestKubectlAttach(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pod := busyboxPod("attachable", 0, "while read x; do echo attached-$x; done; exec sleep 3600")
	pod.Spec.Containers[0].Stdin = true
	if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForPod(ctx, t, ns, "attachable", "Running", podRunningAndReady)
	// stdin stays open until the test ends: at its end the runtime may close the session before the
	// container's answer is out.
	stdin, typing := io.Pipe()
	go func() { _, _ = typing.Write([]byte("hi\n")) }()
	out := kubectlStream(t, ns, stdin, "attach", "-i", "attachable", "-c", "c")
	t.Cleanup(func() { typing.Close() }) // before kubectlStream's: kubectl's end waits for its stdin's
	for {
		line := nextLine(ctx, t, out, "kubectl attach")
		if line == "attached-hi" {
			return
		}
		t.Logf("kubectl attach: %s", line) // "If you don't see a command prompt..."
	}
}

// kubectl port-forward carries an HTTP request to the pod's port.
func TestKubectlPortForward(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.PodSpec{NodeName: nodeName,
		Containers: []corev1.Container{{Name: "web", Image: testImage, ImagePullPolicy: corev1.PullNever}}}}
	if _, err := stack.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForPod(ctx, t, ns, "web", "Running", podRunningAndReady)
	out := kubectlStream(t, ns, nil, "port-forward", "--address", "127.0.0.1", "pod/web", "0:8080")
	forwarding := regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> 8080$`)
	var port string
	for port == "" {
		if m := forwarding.FindStringSubmatch(nextLine(ctx, t, out, "kubectl port-forward")); m != nil {
			port = m[1]
		}
	}
	for i := range 3 { // each request is a new stream over the one connection
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/echo?msg=through-"+fmt.Sprint(i), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatalf("GET through kubectl port-forward: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != fmt.Sprintf("through-%d", i) {
			t.Errorf("GET through kubectl port-forward: %v, %q, want through-%d", err, body, i)
		}
	}
}

// kubectl debug adds an ephemeral container to a running pod, which runs beside the pod's own.
func TestKubectlDebug(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(t)
	startBusybox(ctx, t, ns, "debugged", "exec sleep 3600")
	if out, code := kubectl(ctx, t, ns, "", "debug", "debugged", "--image=localhost/busybox:local", "--image-pull-policy=Never",
		"--container=dbg", "--", "sh", "-c", "echo debugging-$(hostname); exec sleep 3600"); code != 0 {
		t.Fatalf("kubectl debug: exit %d: %s", code, out)
	}
	var out string
	if err := pollUntil(ctx, func() (bool, error) {
		out, _ = kubectl(ctx, t, ns, "", "logs", "debugged", "-c", "dbg")
		return out == "debugging-debugged\n", nil
	}); err != nil {
		t.Errorf("kubectl logs of the debug container printed %q, want debugging-debugged", out)
	}
}
