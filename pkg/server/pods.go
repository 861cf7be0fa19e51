package server

import (
	"encoding/json"
	"net/http"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
)

// handlePods registers /pods (the pods bound to this node, with the status the node reported), /runningpods/
// (what the runtime runs, as the kubelet's container runtime sees it) and /configz (the configuration in
// effect), as the kubelet serves them.
func (s *NodeAPI) handlePods() {
	s.mux.HandleFunc("GET /pods", s.listPods)
	s.mux.HandleFunc("GET /pods/", s.listPods)
	s.mux.HandleFunc("GET /runningpods/", s.runningPods)
	s.mux.HandleFunc("GET /configz", s.configz)
}

func (s *NodeAPI) listPods(w http.ResponseWriter, _ *http.Request) {
	pods, err := s.pods.List(labels.Everything())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writePodList(w, pods)
}

func (s *NodeAPI) runningPods(w http.ResponseWriter, _ *http.Request) {
	var pods []*corev1.Pod
	if s.cfg.RunningPods != nil {
		pods = s.cfg.RunningPods()
	}
	writePodList(w, pods)
}

// writePodList writes pods as a v1 PodList, sorted by namespace and name.
func writePodList(w http.ResponseWriter, pods []*corev1.Pod) {
	list := corev1.PodList{}
	list.APIVersion, list.Kind = "v1", "PodList"
	list.Items = make([]corev1.Pod, 0, len(pods))
	for _, p := range pods {
		list.Items = append(list.Items, *p)
	}
	sort.Slice(list.Items, func(i, j int) bool {
		a, b := list.Items[i], list.Items[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	writeJSON(w, list)
}

// configz is the kubelet's /configz: the configuration under "kubeletconfig", where tools look for it.
func (s *NodeAPI) configz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{"kubeletconfig": s.cfg.Configz})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		klog.V(2).InfoS("Writing a node API answer", "err", err)
	}
}
