package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// minimalNodeName is the Node of the minimal node: it exists so that the pod garbage collector does not take
// its pods for orphans; nothing keeps it Ready.
const minimalNodeName = "bench-minimal"

// minimalNode is the least an API-fed node agent can do for a pod: it watches the pods bound to its node,
// asks the API server for the token of each projected ServiceAccount token volume (the admission plugin gives
// every pod one; the files are not written), starts the pod through CRI exactly as the runtime-alone floor
// does (at most parallel at once), asks the runtime for the sandbox's IP and writes the pod's status once:
// Running, Ready, the IP and the container's state. No other volumes, no probes, no Events. It is a node
// as the API server sees one: its own credentials in system:nodes (so the Node authorizer and the
// NodeRestriction admission apply, and a TokenRequest can be refused for a moment, "pod not found" or "no
// relationship found", as for the agents: it asks again), and the client rate limit both agents have by
// default (50/s, bursts of 100). Timed as the agents are (createReady: creation request → Running and
// Ready seen by a watch), it is the floor of a node agent on this machine with the API server on the same
// cores, which the runtime-alone floor leaves out.
type minimalNode struct {
	// client is the node's; admin creates the burst's pods and cleans up after it.
	client, admin kubernetes.Interface
	rt            *cri.Runtime
	parallel      int
}

// minimalNodeClient is the minimal node's client: its credentials and the agents' rate limit.
func minimalNodeClient(pki string) (kubernetes.Interface, error) {
	config, err := clientcmd.BuildConfigFromFlags("", filepath.Join(pki, minimalNodeName+".kubeconfig"))
	if err != nil {
		return nil, err
	}
	config.QPS, config.Burst = 50, 100
	return kubernetes.NewForConfig(config)
}

// runMinimalNode measures rounds bursts of pods on the minimal node.
func runMinimalNode(ctx context.Context, admin kubernetes.Interface, pki, endpoint string, pods, rounds, parallel int) (burstResult, error) {
	var res burstResult
	client, err := minimalNodeClient(pki)
	if err != nil {
		return res, err
	}
	rt, err := cri.Connect(ctx, endpoint, 2*time.Minute, nil)
	if err != nil {
		return res, err
	}
	nodes := admin.CoreV1().Nodes()
	if _, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: minimalNodeName}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return res, fmt.Errorf("minimal node's Node: %w", err)
	}
	defer func() { _ = nodes.Delete(context.WithoutCancel(ctx), minimalNodeName, metav1.DeleteOptions{}) }()
	m := &minimalNode{client: client, admin: admin, rt: rt, parallel: parallel}
	for r := range rounds {
		controlPlaneBefore, err := controlPlaneCPU()
		if err != nil {
			return res, err
		}
		lat, updates, err := m.burst(ctx, fmt.Sprintf("r%d", r), pods)
		if err != nil {
			return res, fmt.Errorf("minimal node, round %d: %w", r, err)
		}
		controlPlaneAfter, err := controlPlaneCPU()
		if err != nil {
			return res, err
		}
		res.latencies = append(res.latencies, lat...)
		res.controlPlaneCPU = append(res.controlPlaneCPU, controlPlaneAfter-controlPlaneBefore)
		res.updatesPerPod = append(res.updatesPerPod, float64(updates)/float64(pods))
		fmt.Fprintf(os.Stderr, "bench: minimal node, %d at once, round %d: p50 %s p99 %s, control plane %.2f CPU s\n",
			parallel, r, percentile(lat, 50), percentile(lat, 99), controlPlaneAfter-controlPlaneBefore)
	}
	return res, nil
}

// burst runs the node while createReady creates n pods on it and waits for them, then removes the pods
// from the runtime and the API server.
func (m *minimalNode) burst(ctx context.Context, tag string, n int) ([]time.Duration, int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu        sync.Mutex
		sandboxes = map[string]string{} // pod name → sandbox ID
		wg        sync.WaitGroup
	)
	slots := make(chan struct{}, m.parallel)
	informer := informers.NewSharedInformerFactoryWithOptions(m.client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", minimalNodeName).String()
		})).Core().V1().Pods().Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok || pod.DeletionTimestamp != nil {
			return
		}
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			sandbox, err := m.run(ctx, pod)
			mu.Lock()
			sandboxes[pod.Name] = sandbox
			mu.Unlock()
			if err != nil {
				cancel(err)
			}
		})
	}}); err != nil {
		return nil, 0, err
	}
	stop := make(chan struct{})
	go informer.Run(stop)
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		close(stop)
		return nil, 0, errors.New("the minimal node's pod informer did not sync")
	}
	lat, updates, err := createReady(ctx, m.admin, minimalNodeName, tag, n)
	close(stop)
	wg.Wait()
	if cause := context.Cause(ctx); err != nil && cause != nil {
		err = cause
	}
	if cleanErr := m.remove(context.WithoutCancel(ctx), tag, sandboxes); err == nil {
		err = cleanErr
	}
	return lat, updates, err
}

// run starts one pod and writes its status once; it returns the sandbox's ID, if one was made.
func (m *minimalNode) run(ctx context.Context, pod *corev1.Pod) (string, error) {
	if err := m.requestTokens(ctx, pod); err != nil {
		return "", err
	}
	sandbox, container, err := startFloorPod(ctx, m.rt, pod.Name, string(pod.UID))
	if err != nil {
		return sandbox, err
	}
	status, err := m.rt.PodSandboxStatus(ctx, sandbox, false)
	if err != nil {
		return sandbox, fmt.Errorf("PodSandboxStatus %s: %w", pod.Name, err)
	}
	running := pod.DeepCopy()
	running.Status = runningStatus(pod, status.GetStatus().GetNetwork().GetIp(), container, metav1.Now())
	if _, err := m.client.CoreV1().Pods(namespace).UpdateStatus(ctx, running, metav1.UpdateOptions{}); err != nil {
		return sandbox, fmt.Errorf("status of %s: %w", pod.Name, err)
	}
	return sandbox, nil
}

// requestTokens asks for the token of each ServiceAccount token projection of the pod, bound to it, as a
// node agent must before the container starts.
func (m *minimalNode) requestTokens(ctx context.Context, pod *corev1.Pod) error {
	sa := cmp.Or(pod.Spec.ServiceAccountName, "default")
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			token := src.ServiceAccountToken
			if token == nil {
				continue
			}
			var audiences []string
			if token.Audience != "" {
				audiences = []string{token.Audience}
			}
			request := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences,
				ExpirationSeconds: token.ExpirationSeconds,
				BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}}}
			var err error
			_ = poll(ctx, 10*time.Second, func() bool { // refused for a moment: see minimalNode
				_, err = m.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, request, metav1.CreateOptions{})
				return !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err)
			})
			if err != nil {
				return fmt.Errorf("token of %s for %s: %w", sa, pod.Name, err)
			}
		}
	}
	return nil
}

// runningStatus is the status of a pod whose one container runs: what a node agent reports once it started it.
func runningStatus(pod *corev1.Pod, ip, containerID string, now metav1.Time) corev1.PodStatus {
	conditions := make([]corev1.PodCondition, 0, 4)
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		conditions = append(conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	spec := pod.Spec.Containers[0]
	return corev1.PodStatus{
		Phase:      corev1.PodRunning,
		Conditions: conditions,
		PodIP:      ip,
		PodIPs:     []corev1.PodIP{{IP: ip}},
		StartTime:  &now,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: spec.Name, Image: spec.Image, ImageID: spec.Image, ContainerID: "containerd://" + containerID,
			Ready: true, Started: new(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
}

// remove stops and removes the burst's sandboxes, then deletes its pods at once (no node is left to
// confirm a graceful deletion) and waits until they are gone.
func (m *minimalNode) remove(ctx context.Context, tag string, sandboxes map[string]string) error {
	var errs []error
	for name, id := range sandboxes {
		if id == "" {
			continue
		}
		if err := m.rt.StopPodSandbox(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("StopPodSandbox %s: %w", name, err))
		}
		if err := m.rt.RemovePodSandbox(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("RemovePodSandbox %s: %w", name, err))
		}
	}
	pods := m.admin.CoreV1().Pods(namespace)
	selector := benchSelector(minimalNodeName, tag)
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, p := range list.Items {
		// The runtime leaves a pod's log directory to the node agent.
		_ = os.RemoveAll(floorLogDir(p.Name, string(p.UID)))
	}
	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)},
		metav1.ListOptions{LabelSelector: selector}); err != nil {
		errs = append(errs, err)
	}
	if err := poll(ctx, time.Minute, func() bool {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
		return err == nil && len(list.Items) == 0
	}); err != nil {
		errs = append(errs, fmt.Errorf("minimal node's pods not deleted: %w", err))
	}
	return errors.Join(errs...)
}
